/* store.h — the durable record log: the record envelope, CRC32C-framed segment files with
 * recovery, and the store thread that appends batches and makes them durable with one
 * fdatasync per batch (group commit). The on-disk format is in docs/STORE.md.
 *
 * Threads: any number of producers hand batches to kz_store_submit() (one lock per batch);
 * one store thread writes, syncs and calls each item's done callback (on the store thread),
 * in submission order. Readers scan closed and open segments with kz_reclog_scan() at any time:
 * they see every record that was written (synced or not) before they reached it. */
#ifndef STORE_H
#define STORE_H

#include "base/kz_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------- CRC32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2 ---------- */

uint32_t kz_crc32c(uint32_t crc, const void *p, size_t n);

/* ---------- the record envelope (ARCHITECTURE.md "The record") ---------- */

struct kz_bytes {
	const uint8_t *p;
	uint32_t len;
};

enum kz_precedence { KZ_PREC_ROUTINE = 0, KZ_PREC_PRIORITY = 1, KZ_PREC_IMMEDIATE = 2, KZ_PREC_FLASH = 3 };

/* Decoded fields point into the encoded bytes (zero copy). */
struct kz_record {
	uint8_t id[16];          /* UUIDv7 */
	uint64_t time_ns;        /* accept time, Unix ns */
	uint64_t source_time_ns; /* 0 = not supplied */
	uint64_t expiry_ns;      /* absolute Unix ns, 0 = never */
	uint8_t precedence;      /* enum kz_precedence */
	uint8_t qos;             /* MQTT QoS it was published with */
	bool retain;             /* MQTT retain flag */
	bool service;            /* written by a node service (TAXII), not by a client protocol:
				  * only such records may be on reserved topics ('$...') */
	struct kz_bytes topic, origin_node, origin_id, label, content_type;
	struct kz_bytes attrs;   /* the attribute list, encoded (kz_rec_attr_append, kz_rec_attr_next) */
	struct kz_bytes payload;
	uint8_t version;         /* of the envelope; 0 when encoding: KZ_RECORD_VERSION */
};

/* Version 2: attrs is a protocol-neutral attribute list. Version 1 (logs written before
 * 2026-12-04) held MQTT 5 properties there; such records are still read (kz_rec_attr_next maps
 * them) and never written by the node. */
#define KZ_RECORD_VERSION 2

/* ---------- record attributes (docs/STORE.md "Attributes") ----------
 * An ordered list; each protocol maps its own metadata to and from it (MQTT: user
 * properties and the forwarded PUBLISH properties; TAXII: an object's references).
 * Readers skip kinds they do not know. */
enum kz_rec_attr_kind {
	KZ_RATTR_USER = 1,           /* an application's name/value pair; names may repeat, order kept */
	KZ_RATTR_RESPONSE_TOPIC = 2, /* value: the topic a reply should go to */
	KZ_RATTR_CORRELATION = 3,    /* value: opaque bytes tying a reply to its request */
	KZ_RATTR_UTF8_PAYLOAD = 4,   /* the payload is UTF-8 text (no name, no value) */
};
struct kz_rec_attr {
	uint8_t kind;
	struct kz_bytes name, value; /* point into the record */
};
/* Appends one attribute (u8 kind, varint name length, name, varint value length, value). */
int kz_rec_attr_append(struct kz_buf *out, uint8_t kind, const void *name, size_t name_len, const void *value,
		   size_t value_len);
/* The attribute at *off (start at 0) of a decoded record, of either version; false at the end. */
bool kz_rec_attr_next(const struct kz_record *r, size_t *off, struct kz_rec_attr *a);
/* The record's content type (a version 1 will's record kept it only among its properties). */
struct kz_bytes kz_record_content_type(const struct kz_record *r);

/* Appends the encoded record to out (version r->version, 0: the current one). KZ_EDENIED (nothing appended) for a record on a
 * reserved topic (first character '$', MQTT 5.0 §4.7.2) that is not a service's: the one
 * place where every write path meets, so that no client protocol can forge one. */
int kz_record_encode(const struct kz_record *r, struct kz_buf *out);
/* True for a topic that only the node's services may write ('$' first). */
static inline bool kz_topic_reserved(const uint8_t *topic, size_t n)
{
	return n > 0 && topic[0] == '$';
}
/* Decodes exactly n bytes; KZ_EMALFORMED with *why on any inconsistency. */
int kz_record_decode(const uint8_t *p, size_t n, struct kz_record *r, const char **why);
/* The accept time (Unix ns) of an encoded record, without decoding it; 0 when not a record. */
uint64_t kz_record_time_of(const uint8_t *p, size_t n);
/* A UUIDv7 (RFC 9562 §5.7) for the given Unix time in ms: 48-bit time, version, 74 random
 * bits; ids made by one thread are strictly increasing (the random part counts up within a
 * millisecond). */
void kz_uuidv7(uint8_t id[16], uint64_t unix_ms);
/* 36-character canonical text form plus NUL. */
void kz_uuid_format(const uint8_t id[16], char out[37]);
int kz_uuid_parse(const char *s, uint8_t id[16]);

/* ---------- the segmented log ---------- */

enum kz_fsync_mode { KZ_FSYNC_ALWAYS, KZ_FSYNC_INTERVAL, KZ_FSYNC_NEVER };

struct kz_reclog_config {
	const char *dir;           /* the log directory (created when missing) */
	uint64_t segment_bytes;    /* roll to a new segment beyond this */
	uint32_t max_record_bytes; /* larger frames are corruption */
	enum kz_fsync_mode fsync;
	uint32_t fsync_interval_ms;
};

struct kz_reclog;

/* What recovery found, for the start-up log line. */
struct kz_reclog_recovery {
	uint32_t segments;
	uint64_t records;
	uint64_t torn_bytes; /* cut from the end of the last segment (a torn final write) */
};

/* Opens (creating) the log and recovers it: every segment is checked frame by frame; a torn
 * final write is truncated; any other damage fails with *why naming the segment file and
 * byte offset (run `kizuna store repair`). */
int kz_reclog_open(const struct kz_reclog_config *cfg, struct kz_reclog **out, struct kz_reclog_recovery *rec,
		char *why, size_t why_len);
/* The lowest sequence number the log may still hand out (DIR/seq.floor), 0 when none is
 * recorded; raising it records that numbers below were used (kz_reclog_open then never
 * reuses them). */
uint64_t kz_reclog_floor(const char *dir);
int kz_reclog_raise_floor(const char *dir, uint64_t next);
/* The sequence number the log in dir would give its next record (read only: for commands
 * that do not open the log for writing). */
uint64_t kz_reclog_next_in(const char *dir, uint32_t max_record_bytes);
/* Starts a new segment at seq next when the log is below it (numbers in between were used
 * by records that are gone), and raises the floor. */
int kz_reclog_advance(struct kz_reclog *log, uint64_t next, char *why, size_t why_len);
/* Appends frames for n bodies in one write (rolling segments as needed), then syncs per the
 * fsync mode. first_seq receives the sequence number of the first. */
int kz_reclog_append(struct kz_reclog *log, const struct kz_bytes *bodies, size_t n, uint64_t *first_seq,
		  char *why, size_t why_len);
/* In interval mode: fdatasync when written data is older than the interval. */
int kz_reclog_sync_due(struct kz_reclog *log, char *why, size_t why_len);
/* The same, also giving where each frame went (pos[i], for kz_reclog_read). */
struct kz_reclog_pos;
int kz_reclog_append_pos(struct kz_reclog *log, const struct kz_bytes *bodies, size_t n, uint64_t *first_seq,
		      struct kz_reclog_pos *pos, char *why, size_t why_len);
uint64_t kz_reclog_next_seq(const struct kz_reclog *log);
void kz_reclog_close(struct kz_reclog *log);

/* Where a frame is: its segment (the segment's base seq) and byte offset in that file. */
struct kz_reclog_pos {
	uint64_t seg, off;
};

/* Calls cb for every valid record with seq >= from_seq, in order, until cb returns non-zero
 * (which is returned). hint, when not NULL, is where the frame of from_seq (or the first
 * after it) is believed to start: the scan begins there when a valid frame is found at that
 * place, else at the start of that segment. Segments removed by retention while the scan
 * runs are skipped. Damage stops the scan with KZ_EIO and *why (file and offset); a partial
 * frame at the very end (being written) ends the scan quietly. body is valid during the
 * call only (a read window, store_scan.c): copy what is kept. */
typedef int (*kz_reclog_scan_fn)(void *ctx, uint64_t seq, const uint8_t *body, size_t n,
			      const struct kz_reclog_pos *pos);
int kz_reclog_scan(const char *dir, uint64_t from_seq, const struct kz_reclog_pos *hint,
		uint32_t max_record_bytes, kz_reclog_scan_fn cb, void *ctx, char *why, size_t why_len);

/* The segments of dir, oldest first (*bases malloc'd; the last one is the one being
 * written when a node runs). */
int kz_reclog_segments(const char *dir, uint64_t **bases, size_t *n);

/* Rewrites the closed segment `base` keeping the frames for which keep() returns true, byte
 * for byte and with their sequence numbers: the new file is written and synced beside the
 * old one, then renamed over it; when nothing is kept the segment is deleted. *kept receives
 * the number of frames kept. Never call it on the segment being written. */
typedef bool (*kz_reclog_keep_fn)(void *ctx, uint64_t seq, const uint8_t *body, size_t n);
int kz_reclog_rewrite(const char *dir, uint64_t base, uint32_t max_record_bytes, kz_reclog_keep_fn keep,
		   void *ctx, uint64_t *kept, char *why, size_t why_len);

/* Random access by position (query results): keeps the last segment file open. With a
 * read-ahead window (kz_reclog_reader_readahead), a read fetches up to that many bytes from
 * the frame on, and the frames after it that lie inside are served from memory: a TAXII page
 * of 100 objects written together is one or two preads instead of 200. The window is a
 * snapshot: kz_reclog_reader_forget drops it (each request starts with that, so nothing read
 * before a segment was rewritten is served after). */
struct kz_reclog_reader {
	const char *dir;
	uint32_t max_record_bytes;
	int fd;
	uint64_t seg;
	uint8_t *win;	 /* NULL: no read-ahead */
	size_t win_cap;	 /* bytes asked for per read */
	size_t win_size; /* allocated (a frame larger than win_cap grows it) */
	size_t win_len;	 /* bytes held, from win_off of segment seg */
	uint64_t win_off;
};
void kz_reclog_reader_init(struct kz_reclog_reader *r, const char *dir, uint32_t max_record_bytes);
/* Turns the read-ahead window on (bytes > 0; allocated at the first read) or off (0). */
void kz_reclog_reader_readahead(struct kz_reclog_reader *r, size_t bytes);
void kz_reclog_reader_forget(struct kz_reclog_reader *r);
/* Reads the body of the frame at pos into out (replacing its content) after checking its
 * CRC and that it is record seq. KZ_ENOTFOUND when the record is no longer there (removed by
 * retention), KZ_EIO on damage. */
int kz_reclog_read(struct kz_reclog_reader *r, const struct kz_reclog_pos *pos, uint64_t seq, struct kz_buf *out);
void kz_reclog_reader_close(struct kz_reclog_reader *r);

/* Repairs the log in place: each damaged range is moved to DIR/quarantine/ and reported on
 * report (one line per range: segment, offsets, bytes, and the records lost if countable). */
int kz_reclog_repair(const char *dir, uint32_t max_record_bytes, void (*report)(void *ctx, const char *line),
		  void *ctx, char *why, size_t why_len);

/* ---------- retention rules ---------- */

/* A record is governed by the first rule whose filter matches its topic; records that no
 * rule matches are kept. Limits of 0 mean "no limit". The newest retained message of each
 * topic is kept whatever the rules say (it is the topic's retained state). */
struct kz_retention_rule {
	char filter[256];
	uint64_t max_age_ns; /* drop records accepted longer ago */
	uint64_t max_bytes;  /* drop the oldest records of this rule beyond this many bytes */
	uint64_t keep_last;  /* per topic, keep only the newest N (compaction) */
	bool no_qos0;        /* QoS 0 messages on these topics are delivered but not stored */
};

/* Index of the first rule matching topic, or -1. */
int kz_retention_match(const struct kz_retention_rule *rules, size_t n, const uint8_t *topic,
		       size_t topic_len);

/* ---------- the index (SQLite, derived from the log) ---------- */

struct kz_index;

struct kz_index_config {
	const char *path;    /* DIR/index.db */
	const char *log_dir; /* DIR/log */
	uint32_t max_record_bytes;
	const struct kz_retention_rule *rules;
	size_t n_rules;
	bool read_only;      /* queries only: no schema changes, no catch-up */
};

/* Opens (creating) the index. A writer also finishes a rewrite that a crash interrupted and
 * re-derives the rule of every record when the rules changed since the last run. */
int kz_index_open(const struct kz_index_config *cfg, struct kz_index **out, char *why, size_t why_len);
/* SQLite's process-wide settings, once, before the first database is opened (both openers
 * call it): no bulk page-cache allocation per connection (pages are allocated as they are
 * read; an idle node's databases touch a handful). */
void kz_sqlite_setup(void);
void kz_index_close(struct kz_index *ix);
/* Indexes up to max records appended to the log since the last call (max 0 = all).
 * *added receives how many; KZ_OK with *added < max means it has caught up. */
int kz_index_catch_up(struct kz_index *ix, uint64_t max, uint64_t *added, char *why, size_t why_len);
/* The highest sequence number indexed. */
uint64_t kz_index_through(struct kz_index *ix);
/* Checks the index against the log (high-water mark below log_next; its last rows and its
 * resume position name the records really there). 0: they agree; 1 with *why and *hw, the
 * highest sequence number the index knows. kz_index_open returns KZ_EMALFORMED for a
 * database file SQLite finds damaged. log_next KZ_INDEX_LOG_END_NOW: read the log's end
 * after the index's snapshot is taken (a reader beside a live node, which appends and
 * indexes while we look). */
#define KZ_INDEX_LOG_END_NOW 0
int kz_index_check(struct kz_index *ix, uint64_t log_next, uint64_t *hw, char *why, size_t why_len);

struct kz_retention_report {
	uint64_t records_dropped, bytes_dropped;
	uint32_t segments_rewritten, segments_deleted;
};
/* One retention pass at time now_ns over the closed segments: finds the records the rules
 * drop, rewrites each segment where they are at least a quarter of its bytes (deleting it
 * when nothing is left) and updates the index in step. */
int kz_index_retention(struct kz_index *ix, uint64_t now_ns, struct kz_retention_report *rep,
		       char *why, size_t why_len);

/* A query; zero/NULL fields do not restrict. Results are in sequence order (accept order). */
struct kz_query {
	const char *filter;       /* MQTT topic filter */
	uint64_t since_ns, until_ns; /* accept time, inclusive */
	const char *origin;       /* publisher identity (SPIFFE ID) */
	const char *origin_node;
	const char *content_type;
	uint64_t after_seq;       /* only records with a larger sequence number */
	uint64_t limit;
};
typedef int (*kz_index_row_fn)(void *ctx, uint64_t seq, const struct kz_record *r);
/* Calls cb for each matching record, read from the log, until cb returns non-zero. Records
 * removed by retention since they were indexed are skipped. */
int kz_index_query(struct kz_index *ix, const struct kz_query *q, kz_index_row_fn cb, void *ctx,
		   char *why, size_t why_len);
/* Calls cb for each topic's retained message (the newest retained record with a payload). */
int kz_index_retained(struct kz_index *ix, kz_index_row_fn cb, void *ctx, char *why, size_t why_len);
/* The sequence number of record id (its UUIDv7 time narrows the search), or 0. */
uint64_t kz_index_find_id(struct kz_index *ix, const uint8_t id[16]);
/* The first sequence number accepted at or after time_ns, or 0 when none is indexed. */
uint64_t kz_index_first_since(struct kz_index *ix, uint64_t time_ns);
/* The same, exact when the log is not in time order (a cluster's followed records): the
 * lowest sequence number of any record accepted at or after time_ns. */
uint64_t kz_index_first_at(struct kz_index *ix, uint64_t time_ns);

/* ---------- session state (DIR/sessions.db) ---------- */

/* What a persistent MQTT session (Session Expiry Interval > 0) needs to survive a restart.
 * Not derived from the log: this is the source of truth for sessions. Its messages are not
 * copied here — they are the log's records after acked_through. */
struct kz_state_sub {
	const char *filter, *group; /* group NULL: not shared */
	uint8_t qos, retain_handling;
	bool no_local, retain_as_published;
	uint32_t sub_id;
};

struct kz_state_will {
	struct kz_bytes topic, payload, props;
	uint8_t qos;
	bool retain;
	uint32_t delay_s;
	uint32_t expiry_s; /* Message Expiry Interval, 0 = none */
	bool has_expiry;
};

struct kz_state_session {
	const char *client_id;
	const char *peer_id;       /* the identity (SPIFFE ID) it last connected with */
	uint32_t expiry_s;
	uint64_t offline_since_ns; /* 0: it was connected when the node stopped */
	uint64_t acked_through;    /* every QoS 1/2 record up to here was acknowledged */
	const struct kz_state_will *will; /* NULL: none */
	const struct kz_state_sub *subs;
	size_t n_subs;
	uint64_t epoch; /* in a cluster: its moves between nodes (docs/CLUSTER.md "Sessions") */
};

/* A persistent session as the nodes of a cluster share it (docs/CLUSTER.md "Sessions"): the
 * value of its KZ_SESSIONS entry (store_session.c has the encoding). */
struct kz_session_entry {
	const char *owner;   /* the node id that serves it */
	uint64_t epoch;      /* one more at each move to another node */
	uint64_t cut_ns;     /* every QoS 1/2 record for it accepted before this time was acknowledged */
	uint64_t updated_ns; /* when its owner wrote it */
	bool ended;          /* the session ended (a tombstone) */
	struct kz_state_session s; /* s.acked_through is not carried: cut_ns stands for it */
};
int kz_session_entry_encode(const struct kz_session_entry *e, struct kz_buf *out);
/* Decodes exactly n bytes; the strings and arrays of *e live in *block (free it). */
int kz_session_entry_decode(const uint8_t *p, size_t n, struct kz_session_entry *e, void **block, const char **why);

struct kz_state;

/* Opens (creating) the database. Any thread may call the functions below (serialised). */
int kz_state_open(const char *path, struct kz_state **out, char *why, size_t why_len);
void kz_state_close(struct kz_state *st);
/* A session connected: its row replaces the old one; fresh (not resumed) drops its subs. */
int kz_state_connected(struct kz_state *st, const char *client_id, const char *peer_id, uint32_t expiry_s,
		       const struct kz_state_will *will, bool fresh, uint64_t acked_through, uint64_t epoch);
int kz_state_offline(struct kz_state *st, const char *client_id, uint64_t since_ns, uint32_t expiry_s);
int kz_state_will_done(struct kz_state *st, const char *client_id);
int kz_state_acked(struct kz_state *st, const char *client_id, uint64_t acked_through);
int kz_state_sub_put(struct kz_state *st, const char *client_id, const struct kz_state_sub *sub);
int kz_state_sub_del(struct kz_state *st, const char *client_id, const char *group, const char *filter);
int kz_state_ended(struct kz_state *st, const char *client_id);
/* Calls cb for every stored session with its subscriptions and will. */
int kz_state_load(struct kz_state *st, int (*cb)(void *ctx, const struct kz_state_session *ss), void *ctx,
		  char *why, size_t why_len);

/* ---------- the data directory lock ---------- */

/* Takes DIR/lock (flock, exclusive, not waiting): one node, or one offline command that
 * writes the log or the index, uses a data directory at a time. Returns the descriptor to
 * keep open (closing it releases the lock), KZ_EDENIED when another process holds it, or
 * KZ_EIO. */
int kz_data_lock(const char *data_dir, char *why, size_t why_len);

/* Is dir a node's data directory (it exists and has pki/, log/ or audit/)? 0, or KZ_ENOTFOUND
 * with *why for commands to print: no command creates or reads a directory by mistake. */
int kz_data_dir_check(const char *dir, char *why, size_t why_len);

/* ---------- the store thread ---------- */

/* status: KZ_OK when the record is durable per the fsync mode, else an error (nothing was
 * acknowledged). Called on the store thread. */
typedef void (*kz_store_done_fn)(void *ctx, int status, uint64_t seq);

struct kz_store_item {
	uint8_t *data; /* malloc'd encoded record; the store frees it (unless borrowed) */
	uint32_t len;
	kz_store_done_fn done;
	void *ctx;
	struct kz_reclog_pos *pos; /* NULL, or filled with where the record went before done runs */
	/* data is the caller's, valid until this item's done has run, and the store never frees
	 * it: many records in one block, freed once by the last item's done (a TAXII POST of
	 * thousands of objects: no malloc, copy and free per record) */
	bool borrowed;
};

struct kz_store;

struct kz_store_config {
	struct kz_reclog_config log;
	const char *index_path;  /* NULL: no index, no retention */
	const struct kz_retention_rule *rules;
	size_t n_rules;
	uint32_t retention_interval_ms; /* between retention passes */
	/* Called on the store thread after the done callbacks of each batch (NULL: none), so
	 * that callers can hand over what the callbacks gathered in one step. */
	void (*batch_end)(void *arg);
	void *batch_arg;
	/* Called on the store thread once a batch is readable (durable_next advanced past it),
	 * with batch_arg (NULL: none): for readers that tail the log (a cluster's replicator). */
	void (*durable)(void *arg);
};

/* Sequence numbers below next were used (a persistent session acknowledged up to there):
 * the log starts its next record at next at the latest, before any later batch. */
void kz_store_advance(struct kz_store *st, uint64_t next);

/* True on the store thread (inside done and batch_end callbacks). */
bool kz_store_on_store_thread(void);

/* Opens the log (recovering it), brings the index up to date with it (synchronously: the
 * retained messages it lists must be current), and starts the store thread and the index
 * thread (indexing as records are written, retention every interval). */
int kz_store_open(const struct kz_store_config *cfg, struct kz_store **out, struct kz_reclog_recovery *rec,
		  char *why, size_t why_len);
/* What /healthz and /metrics report about the store (any thread). */
struct kz_store_health {
	bool write_failing;      /* the last batch could not be written: durable writes fail */
	bool index_failing;
	uint64_t write_errors;   /* batches that could not be written since start */
	uint64_t durable_next, indexed_through; /* lag = durable_next - 1 - indexed_through */
	uint64_t free_bytes;     /* available to the node on the log's file system */
};
void kz_store_health(struct kz_store *st, struct kz_store_health *h);
/* Takes n items (their data) in one step; their done callbacks follow on the store thread. */
void kz_store_submit(struct kz_store *st, struct kz_store_item *items, size_t n);
/* False for a QoS 0 message on a topic whose retention rule says not to store QoS 0. */
bool kz_store_wants(const struct kz_store *st, const uint8_t *topic, size_t topic_len, uint8_t qos);
/* Bytes submitted and not yet written (any thread): publishers are held above a cap. */
uint64_t kz_store_pending_bytes(const struct kz_store *st);
/* A ticket for everything submitted so far (any thread): kz_store_ticket_done says when all
 * of it was written (synced as store.fsync says) or failed, its done callbacks run. The store
 * takes items in the order they were submitted. */
uint64_t kz_store_ticket(const struct kz_store *st);
bool kz_store_ticket_done(const struct kz_store *st, uint64_t ticket);
/* One past the highest durable sequence number (any thread). */
uint64_t kz_store_durable_next(const struct kz_store *st);
/* The oldest accept time of any record written after sequence number after (UINT64_MAX when
 * none is), from the last 4096 batches; 0 when they do not reach back to after. */
uint64_t kz_store_time_floor(struct kz_store *st, uint64_t after);
/* The lowest sequence number of a record accepted at or after time_ns (exact, from the index),
 * or the first one the index has not seen yet. */
uint64_t kz_store_seq_since(struct kz_store *st, uint64_t time_ns);
/* kz_reclog_scan over this store's log, ending before the first record not yet durable (any
 * thread). *end receives that bound: when cb never stopped the scan, every record below it
 * was seen. */
int kz_store_scan(struct kz_store *st, uint64_t from_seq, const struct kz_reclog_pos *hint,
		  kz_reclog_scan_fn cb, void *ctx, uint64_t *end, char *why, size_t why_len);
/* Where a replay starts (kz-replay-since, docs/STORE.md): spec is an RFC 3339 time (the
 * first record accepted at or after it) or a record id (the record after it). *seq is the
 * first sequence number to replay. KZ_ENOTFOUND for an unknown id, KZ_EINVAL for neither. */
int kz_store_replay_start(struct kz_store *st, const char *spec, uint64_t *seq, char *why, size_t why_len);
/* Each topic's retained message, from the index (any thread; serialised). */
int kz_store_retained(struct kz_store *st, kz_index_row_fn cb, void *ctx, char *why, size_t why_len);
/* Writes what was submitted, calls its callbacks, stops the threads, closes log and index.
 * Returns the final durable end (kz_store_durable_next), 0 for NULL. */
uint64_t kz_store_close(struct kz_store *st);

#endif
