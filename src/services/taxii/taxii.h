/* taxii.h — the TAXII 2.1 server (OASIS TAXII 2.1, 10 June 2021) over the node's HTTPS API,
 * with STIX 2.1 objects stored as records in the data layer (docs/TAXII.md).
 *
 * Each object is one record in the log (topic $taxii/<collection>/<type>/<uuid>/<version µs>,
 * payload the validated object, origin the poster, label its TLP and audience); deletions
 * are tombstone records ($taxii-del/...). The per-collection index is derived: rebuilt from
 * the log at start, appended to as records become durable. Its order is the collection's
 * date_added order (strictly increasing), so a `next` cursor is a position in it: a page
 * deep in a collection costs what the first does and concurrent writes, which only append,
 * cause no skip and no duplicate.
 *
 * TLP (stix.h ids; docs/TAXII.md "TLP and audiences") is enforced on every exit: CLEAR, GREEN
 * and unmarked objects go to every reader of the collection; AMBER to the poster's
 * organisation and the organisations or identities named in its audience; AMBER+STRICT only
 * within one organisation (the audience's, else the poster's); RED only to the poster and
 * the identities or organisations named. An object a reader may not see is absent from
 * results, counts, headers, versions, manifests, statuses and pagination. */
#ifndef KZ_TAXII_H
#define KZ_TAXII_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct kz_http;
struct kz_store;
struct kz_policy;

struct taxii_config {
	const char *collections_file; /* JSON list of collections (created with one default when missing) */
	struct kz_store *store;
	const char *log_dir;
	uint32_t max_record_bytes;
	_Atomic(struct kz_policy *) *policy; /* the node's policy (NULL inside: none) */
	const char *node_id;
	unsigned workers;
	uint32_t max_page;          /* largest limit honoured */
	uint32_t default_page;      /* limit when none is given */
	uint32_t max_post_objects;  /* objects in one POST envelope */
	uint32_t max_scan;          /* index entries examined for one page */
	uint32_t max_statuses;      /* status resources kept (oldest dropped) */
	uint64_t max_status_bytes;  /* ... and at most this much of them */
	uint64_t max_content_length; /* advertised: the HTTPS body cap */
};

struct taxii;
struct kz_store_item;

int taxii_open(const struct taxii_config *cfg, struct taxii **out, char *why, size_t why_len);
int taxii_routes(struct taxii *t, struct kz_http *h);
void taxii_close(struct taxii *t);

/* Parses a TAXII query string (§3.5 filters plus kizuna's match[created_by_ref] and
 * match[object_marking_refs]) against an empty server, as a GET would: 0 when accepted, -1
 * with why otherwise. For the fuzzer (fuzz_taxii_query). */
int taxii_query_check(const char *qs, size_t n, char *why, size_t why_len);

/* A record of another node (a cluster's follower, docs/CLUSTER.md): when it is a TAXII
 * object's (or a deletion's), taxii_follow submits it to the store itself, dated in its
 * collection's date_added order, indexes it once durable, then calls it->done; returns 1.
 * 0: not a TAXII record, the caller submits it; -1: out of memory (nothing submitted). */
int taxii_follow(struct taxii *t, struct kz_store_item *it);

/* An object of one of the node's services (docs/TAXII.md "Objects from the node's
 * services"), e.g. a sighting: validated as a POST's are, then recorded in collection coll
 * (its id) as written by author with label (taxii.h's label text: the policy's part, tlp,
 * aud), dated and indexed as a follower's record. 0 submitted; 1 already there (this
 * version, or an SCO in any version); -1 with why. Any thread. */
int taxii_put(struct taxii *t, const char *coll, const char *author, const char *label, const char *json, size_t n,
	      char *why, size_t why_len);
/* The newest version of object type/uuid in collection coll that is not deleted: its record
 * read from the log into rec (kz_record_decode it). 1; 0 none; -1 the log could not be read. */
struct kz_buf;
int taxii_newest(struct taxii *t, const char *coll, const char *type, const uint8_t uuid[16], struct kz_buf *rec);

/* Objects and versions in the index (for the start-up log line). */
void taxii_counts(struct taxii *t, uint64_t *collections, uint64_t *entries);

#endif
