/* taxii_internal.h — what the TAXII server's files share: the index's types, the server,
 * and the functions one part calls in another (taxii_index.c: the index; taxii_store.c: the
 * collections file, the rebuild from the log, open and close; taxii_query.c: request helpers
 * and query strings; taxii_resources.c: discovery, collections, pages and statuses;
 * taxii_post.c: POST and DELETE; taxii.c: routing). Not for use outside src/services/taxii. */
#ifndef KZ_TAXII_INTERNAL_H
#define KZ_TAXII_INTERNAL_H

#include "trust/access.h"
#include "services/taxii/taxii.h"
#include "base/kz_buf.h"
#include "base/kz_jscan.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "http/http.h"
#include "services/stix/stix.h"
#include "store/store.h"
#include "trust/policy.h"
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum listing { L_OBJECTS, L_MANIFEST, L_VERSIONS };

#define TX_MAX_TYPES 4096
#define TX_MAX_ACCESS 65536
#define TX_MAX_AUD 8
#define TX_NONE UINT32_MAX
/* Bytes each worker reads from the record log at a time for pages (kz_reclog_reader_readahead):
 * about a page of 100 typical ATT&CK objects (1.3 kB each) with their frames. */
#define TX_READ_AHEAD (128u << 10)
#define TAXII_MT "application/taxii+json;version=2.1"
#define STIX_MT "application/stix+json;version=2.1"


struct tx_ent {
	uint64_t seq;
	struct kz_reclog_pos pos;
	int64_t added_us, version_us;
	uint8_t uuid[16];
	uint32_t type_i, acc_i;
	uint32_t by_i; /* created_by_ref (taxii->refs), TX_NONE: none */
	uint32_t mk_i; /* object_marking_refs (taxii->msets), TX_NONE: none */
	uint32_t next_ver; /* the next entry of the same object, TX_NONE: none */
	uint8_t tlp;
	uint8_t deleted;
	uint8_t multi; /* the object has another version in this collection (set by tx_ent_add) */
};

struct tx_slot {
	uint64_t h;      /* 0: empty */
	uint32_t first, last;
};

/* The entries (ascending) that name one interned value: one list per created_by_ref and
 * one per marking definition, so that a filter on them costs the same at any depth. */
struct tx_plist {
	uint32_t *v;
	uint32_t n, cap;
};

#define TX_INTERN_CHUNK 4096u

#define TX_INTERN_CHUNKS 256u /* 1,048,576 distinct values */

/* Interned byte strings: STIX identifiers (created_by_ref, marking refs) and marking sets
 * (sorted arrays of identifier indexes). Values live in fixed chunks, so a reader needs no
 * lock to read an index it got from an entry; interning takes the mutex. */
struct tx_istr {
	char *p;
	uint32_t len;
};

struct tx_intern {
	pthread_mutex_t lock;
	struct tx_istr *chunk[TX_INTERN_CHUNKS];
	_Atomic uint32_t n;
	uint32_t *ht; /* index + 1, 0: empty */
	size_t nht;
};

/* Who may see an object besides the readers of a CLEAR/GREEN one. */
struct tx_access {
	char *author;
	struct kz_share share; /* the label's TLP and audience (trust/access.h) */
	char *key; /* author|label */
	char *label;
	char *base; /* the label without tlp and aud: the policy's part ("" when none) */
};

struct tx_coll {
	char id[37];
	char *title, *description;
	bool allow_custom;
	json_t *readers, *writers; /* NULL: anyone the policy allows */
	pthread_rwlock_t lock;     /* the entries and the slots */
	pthread_mutex_t wlock;     /* date_added assignment + submission order */
	struct tx_ent *e;
	size_t n, cap;
	struct tx_slot *slots;
	size_t nslots, used;
	int64_t last_added;
	struct tx_plist *by_post, *mk_post; /* indexed by taxii->refs index */
	uint32_t nby, nmk;
};

struct tx_item {
	struct tx_ent e;
	char *owned;         /* a re-encoded object, until its record is made */
	const char *payload; /* the object's JSON: owned or a slice of the request body */
	uint32_t plen;
	struct kz_reclog_pos pos;
	char id[STIX_ID_MAX];
	char version[64];
	int status;
	bool done; /* under taxii.st_lock */
};

struct tx_status {
	char id[37];
	char *owner;
	int64_t req_us;
	uint32_t total, ok, fail, pending;
	json_t *successes, *failures; /* while pending; NULL once sealed */
	struct tx_item *items;        /* while pending: the POST's records, those not done pending */
	size_t n_items;
	char *text;                              /* the complete status as JSON, once sealed */
	size_t bytes;
	bool dropped; /* out of the ring while still pending: its POST frees it when done */
};

struct taxii {
	struct taxii_config cfg;
	struct tx_coll *c;
	size_t nc;
	pthread_mutex_t intern;
	char *types[TX_MAX_TYPES];
	_Atomic uint32_t ntypes;
	struct tx_access *acc[TX_MAX_ACCESS];
	_Atomic uint32_t nacc;
	struct tx_intern refs, msets;
	pthread_mutex_t st_lock;
	/* the records block of the last POST, kept for the next (tx_post.recs): freed, a block
	 * of megabytes went back to the kernel with its arena's top and was faulted in afresh,
	 * 9 ms of a POST of ATT&CK ICS */
	_Atomic(struct tx_recs *) spare_recs;
	atomic_bool store_arena_asked; /* kz_mem_arena_huge on the store thread, at the first POST */
	void *store_arena_pad;
	struct tx_status **st;
	size_t st_next;
	uint64_t st_bytes; /* of sealed statuses, held under taxii.max_status_bytes */
	struct kz_reclog_reader *rd; /* one per worker */
};

#define PROP_BY "stix-created-by-ref"

#define PROP_MK "stix-marking-ref"

/* The reader of a request. */
/* Per request: kz_may_read's verdict on each access entry (author and label), worked out once. */
struct lab_cache {
	uint32_t n;
	uint8_t *state; /* 0 not yet, 1 dominates, 2 does not */
};

struct tx_subject {
	const char *id;
	char org[128];
	struct kz_policy *pol;
	struct kz_subject s;
	struct lab_cache *lc;
};

struct rebuild {
	struct taxii *t;
	uint64_t n, skipped, foreign;
};

struct tx_query {
	bool has_added_after;
	int64_t added_after;
	uint32_t limit;
	bool has_next;
	uint64_t next;
	size_t n_ids;
	struct { uint32_t type_i; uint8_t uuid[16]; } ids[64];
	size_t n_types;
	uint32_t types[64];
	bool v_first, v_last, v_all;
	size_t n_vts;
	int64_t vts[64];
	bool spec_given, spec21;
	size_t n_by, n_mk; /* match[created_by_ref], match[object_marking_refs] (refs indexes) */
	uint32_t by[64], mk[64];
	char aud[600];     /* match[audience]: canonical entries, ',' between them ("" none) */
	const char *bad; /* why the query is refused */
	char bad_buf[200];
	struct taxii *t;
	int seen_limit, seen_next, seen_added, seen_id, seen_type, seen_ver, seen_spec, seen_by, seen_mk, seen_aud;
};

/* One page: copies of the matching entries (at most limit), whether there are more and the
 * cursor to them. Holds the read lock while it runs. */
struct page {
	struct tx_ent *e; /* copies */
	size_t n;
	bool more;
	uint64_t next;
};

/* Where a page's candidates come from: every entry from the start, the named objects'
 * versions (match[id]), or the posting lists of created_by_ref / marking filters merged
 * in index order. Each yields ascending entry indexes. */
struct cands {
	enum { C_ALL, C_ARR, C_LISTS } kind;
	uint64_t i, end;        /* C_ALL */
	uint32_t *arr;          /* C_ARR: sorted */
	size_t n, ai;
	const struct tx_plist *l[64]; /* C_LISTS */
	uint32_t pos[64];
	size_t nl;
};

struct tx_post {
	struct taxii *t;
	struct tx_coll *c;
	struct tx_status *st;     /* NULL for a DELETE */
	struct kz_http_deferred *d;
	struct tx_item *items;
	size_t n;
	_Atomic size_t remaining;
	bool del;
	const char *ct;
	char *answer; /* the status text, copied when the last record is done */
	struct tx_recs *recs;   /* the records, one after another, until the last is durable */
	struct done_ctx *dcs;   /* each record's done context */
	uint64_t t_start, t_parsed, t_validated, t_submitted; /* monotonic ns: Server-Timing */
	uint64_t t_received; /* ns from the request's first byte to the handler */
};

/* A POST's records block: on the heap, or mapped in huge pages (mapped bytes; b.max keeps the
 * buffer from being realloc'd, tx_recs_unmap moves it to the heap). */
struct tx_recs {
	struct kz_buf b;
	size_t mapped;
};
/* Its memory freed (the struct stays); 0, or -1 when the move to the heap found no memory. */
void tx_recs_free(struct tx_recs *r);
int tx_recs_unmap(struct tx_recs *r);

struct done_ctx {
	struct tx_post *p;
	size_t i;
};

#define TX_DOC_KEEP (32u << 20)

/* A sorted list of the marking-definition ids an envelope brings (objects may refer to
 * them before they are stored). */
struct mk_ctx {
	const char **ids;
	size_t n;
	struct tx_coll *c;
	struct taxii *t;
};

struct tx_slot *tx_slot_of(struct tx_coll *c, uint32_t type_i, const uint8_t uuid[16], bool insert);
uint32_t tx_intern(struct tx_intern *in, const void *p, size_t n, bool add);
void tx_intern_free(struct tx_intern *in);
const uint32_t *tx_mset_of(struct taxii *t, const struct tx_ent *e, uint32_t *n);
void tx_plists_free(struct tx_plist *l, uint32_t n);
int tx_refs_intern(struct taxii *t, const char *by, const char *const *marks, size_t nm, uint32_t *by_i,
		       uint32_t *mk_i);
void tx_refs_attrs(struct taxii *t, const struct tx_ent *e, struct kz_buf *b);
int tx_refs_from_record(struct taxii *t, const struct kz_record *r, uint32_t *by_i, uint32_t *mk_i);
int tx_ent_add(struct taxii *t, struct tx_coll *c, const struct tx_ent *e);
uint32_t tx_type_index(struct taxii *t, const char *type, bool add);
uint32_t tx_access_index(struct taxii *t, const char *author, const char *label);
bool tx_visible(struct taxii *t, const struct tx_subject *sub, const struct tx_ent *e);
struct tx_coll *tx_coll_of(struct taxii *t, const char *id, size_t n);
bool tx_can_read(struct tx_coll *c, struct tx_subject *sub);
bool tx_can_write(struct tx_coll *c, struct tx_subject *sub);
void tx_subject_init(struct taxii *t, struct kz_http_req *r, struct tx_subject *sub);
void tx_mark_deleted(struct tx_coll *c, uint32_t type_i, const uint8_t uuid[16], int64_t ver);
void tx_status_free(struct tx_status *s);
void tx_err(struct kz_http_req *r, int status, const char *title, const char *desc);
const char *tx_accepted(struct kz_http_req *r, bool stix_too);
bool tx_content_type_ok(struct kz_http_req *r);
void tx_send_json(struct kz_http_req *r, int status, const char *ct, json_t *o);
int tx_parse_query(struct taxii *t, struct kz_http_req *r, struct tx_query *q, bool default_all);
void tx_select_page(struct taxii *t, struct tx_coll *c, const struct tx_subject *sub, const struct tx_query *q,
			struct page *pg);
void tx_page_headers(struct kz_http_req *r, const struct page *pg);
void tx_envelope_head(struct kz_buf *b, const struct page *pg, const char *key);
int tx_append_object(struct taxii *t, struct kz_http_req *r, const struct tx_ent *e, struct kz_buf *b,
			 struct kz_buf *tmp);
void tx_discovery(struct taxii *t, struct kz_http_req *r);
void tx_api_root(struct taxii *t, struct kz_http_req *r);
void tx_collections(struct taxii *t, struct kz_http_req *r, const char *cid, size_t cidn);
void tx_list(struct taxii *t, struct kz_http_req *r, struct tx_coll *c, struct tx_subject *sub, enum listing what,
		 const char *obj_id);
/* The status as JSON text (§4.3.1; malloc'd, NULL when out of memory). Caller holds st_lock. */
char *tx_status_text(const struct tx_status *s);
void tx_status_seal(struct taxii *t, struct tx_status *s);
void tx_status_get(struct taxii *t, struct kz_http_req *r, const char *sid, size_t n);
void tx_post_objects(struct taxii *t, struct kz_http_req *r, struct tx_coll *c, struct tx_subject *sub);
void tx_delete_object(struct taxii *t, struct kz_http_req *r, struct tx_coll *c, struct tx_subject *sub,
			  const char *obj_id);
bool tx_query_object(struct taxii *t, struct kz_http_req *r, struct tx_query *q, const char *obj_id);
int tx_cmp_u32(const void *a, const void *b);
int tx_cmp_str(const void *a, const void *b);

#endif
