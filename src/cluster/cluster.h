/* cluster.h — kizuna nodes as a cluster on NATS JetStream (docs/CLUSTER.md).
 *   the replicator (cluster.c): tails the node's own record log and publishes the records
 *     this node accepted to the stream KZ_RECORDS (subject kz.rec.<node id>, Nats-Msg-Id = the
 *     record id), so that an acknowledgement can wait until JetStream has the record too, and
 *     re-publishes from the log whatever JetStream does not have after a restart or a loss;
 *   the follower (cluster_follow.c): takes the other nodes' records into this node's log;
 *   the KV buckets (cluster_kv.c): KZ_SESSIONS and KZ_TRUST, bytes in and out.
 *
 * Threads: the replicator, the follower, the KV thread (and nats.c's own); the callbacks run
 * on them. */
#ifndef KZ_CLUSTER_H
#define KZ_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct kz_store;

/* The strings must outlive the cluster, but for state_path (copied). */
struct kz_cluster_config {
	const char *servers;          /* cluster.nats: "tls://host:port,tls://host:port" */
	const char *ca_file, *cert_file, *key_file; /* mutual TLS with the node's certificate */
	const char *node_id;          /* the subject's last token: letters, digits, '-' and '_' */
	struct kz_store *store;       /* the node's own log, tailed up to its durable end */
	const char *log_dir;
	uint32_t max_record_bytes;
	const char *state_path;       /* DIR/cluster.state: the confirmed watermark */
	uint32_t replicas;            /* of KZ_RECORDS (cluster.replicas, 3) */
	uint32_t publish_timeout_ms;  /* no PubAck in this long: no quorum (cluster.publish_timeout_ms) */
	uint32_t window;              /* records published and not yet acknowledged (cluster.publish_window) */
	/* Records of one scan go out together, up to these in one message (cluster.batch_records,
	 * cluster.batch_bytes; a larger record goes alone): a batch, see kz_cluster_batch_next. */
	uint32_t batch_records, batch_bytes;
	/* cluster.bridge_ms: records of ours waiting this long with no confirmation from
	 * KZ_RECORDS (its leader died: an election) also go to the stream KZ_BRIDGE, and its
	 * confirmation acknowledges them (docs/CLUSTER.md "The bridge"). 0: no bridge. */
	uint32_t bridge_ms;
	/* cluster.bridge_adopt_ms: another node's records on KZ_BRIDGE that this node lacks, with
	 * nothing more of that node in KZ_RECORDS for this long (it died before it published them
	 * there), are published to KZ_RECORDS for it (docs/CLUSTER.md "The bridge"). */
	uint32_t bridge_adopt_ms;
	/* Every record this node accepted with a sequence number <= seq is in JetStream. Called
	 * from the cluster's threads whenever that watermark advances. */
	void (*confirmed)(void *arg, uint64_t seq);
	/* The follower: records of other nodes, in stream order, each once (a record whose
	 * origin sequence this node already has is dropped). The node stores body (the envelope)
	 * and calls kz_cluster_followed() when it is durable; 0, or -1 when it cannot take it
	 * (it comes again). NULL: this node does not follow.
	 * hold: NULL, deliver it once durable; else a record that came before records of its
	 * origin that are still awaited (a gap): once durable, do not deliver it but put what
	 * delivers it into *hold; release() delivers it later, in origin order, when the gap
	 * fills (or cluster.gap_timeout_ms passes, or the node stops). */
	int (*follow)(void *arg, const uint8_t *body, size_t n, void **hold);
	void (*release)(void *arg, void *held);
	/* The follower has every record the stream held at a newer time, while a CONNECT waits for
	 * it (kz_cluster_settled said false since the last call); any thread, must not block. */
	void (*caught_up)(void *arg);
	uint32_t gap_timeout_ms;      /* cluster.gap_timeout_ms: held records wait at most this */
	uint32_t consumer_stall_ms;   /* cluster.consumer_stall_ms: a consumer that delivers nothing more is made again */
	uint32_t consumer_lost_ms;    /* cluster.consumer_lost_ms: one that does not answer, made again elsewhere */
	uint32_t consumer_scan_ms;    /* cluster.consumer_scan_ms: JetStream's names of ours read again this often (0: 30 s, its default) */
	/* Shared sessions (bucket KZ_SESSIONS, docs/CLUSTER.md "Sessions"): every value of the
	 * bucket with its key and revision, the whole bucket first and then each change in order
	 * (this node's own writes too), on the cluster's session thread; value NULL: the key was
	 * deleted or purged. NULL: this node shares no sessions. */
	void (*session)(void *arg, const char *key, uint64_t rev, const uint8_t *value, size_t n);
	/* On the session thread, about every 100 ms while KZ_SESSIONS is open (heartbeats, dead
	 * nodes' sessions, tombstones: node_sessions.c); kz_cluster_session_update and _purge may
	 * be called from it and from session(). NULL: none. */
	void (*session_tick)(void *arg);
	/* Trust documents (bucket KZ_TRUST, docs/CLUSTER.md "Trust across the cluster"): every
	 * value with its key, the same way. NULL: this node takes none. */
	void (*trust)(void *arg, const char *key, const uint8_t *value, size_t n);
	void *session_arg, *trust_arg;
	void *arg;                    /* of confirmed and follow */
};

struct kz_cluster;

/* Starts the replicator (it connects, creates or updates the stream, and retries for as
 * long as it runs). Fails only on a bad configuration (*why says what). */
int kz_cluster_start(const struct kz_cluster_config *cfg, struct kz_cluster **out, char *why, size_t why_len);
/* Stops its threads (what is in flight is waited for up to publish_timeout_ms; the watermark
 * is saved); kz_cluster_followed() may still be called until kz_cluster_free. */
void kz_cluster_stop(struct kz_cluster *c);
void kz_cluster_free(struct kz_cluster *c);

struct kz_cluster_stats {
	uint64_t confirmed_seq;    /* local log sequence: every own record up to it is in JetStream */
	uint64_t published, acked, republished, errors;
	uint64_t pending;          /* published, not yet acknowledged */
	uint64_t followed, duplicates; /* records of other nodes taken; dropped as already here */
	uint64_t held, released_late; /* held back behind a gap now; delivered out of order after
				       * cluster.gap_timeout_ms */
	uint64_t late, gaps_open, gaps_dropped; /* taken after their successors; sequences still
						     * awaited; gaps given up (more than 32 open) */
	uint64_t session_puts, session_updates, session_errors; /* KZ_SESSIONS writes, changes read, failures */
	size_t session_queue;      /* session writes waiting for JetStream */
	uint64_t order_expired;    /* CONNECTs answered at kz_cluster_settled's bound */
	uint64_t swaps;            /* moves to another server: JetStream did not answer through ours */
	uint64_t consumers_remade; /* our consumer deleted and made again (cluster.consumer_stall_ms, _lost_ms) */
	uint64_t trust_puts, trust_updates; /* KZ_TRUST writes, changes read */
	bool connected, quorum;    /* quorum: no publish has waited longer than publish_timeout_ms */
	uint64_t bridged, bridge_episodes; /* the bridge: records of ours confirmed on KZ_BRIDGE,
					    * times it began */
	bool bridging;
	uint64_t adoptions, adopted_msgs; /* other nodes' bridged tails this node published to
					   * KZ_RECORDS for them (cluster_adopt.c); their messages */
};
void kz_cluster_stats(struct kz_cluster *c, struct kz_cluster_stats *out);
/* `kizuna cluster status`: connects to NATS as cfg says (store, follow and confirmed are not
 * used), prints the stream's state and replicas, this node's consumer lag, its saved watermark
 * and how many of its records JetStream lacks, one "key: value" per line. -1 with *why when
 * NATS cannot be reached. */
int kz_cluster_print_status(const struct kz_cluster_config *cfg, FILE *out, char *why, size_t why_len);
/* The same, then (records) every message of this node's subject read (headers only), for the
 * line "this node's records stored: N in M messages, D more than once, G missing, ...". */
int kz_cluster_print_status_ex(const struct kz_cluster_config *cfg, bool records, FILE *out, char *why,
			       size_t why_len);
/* False while JetStream does not acknowledge in time (or the connection is down). */
bool kz_cluster_quorum(struct kz_cluster *c);
/* A record handed to follow() is durable (status 0) or failed (any thread). */
void kz_cluster_followed(struct kz_cluster *c, int status);
/* Writes value under key in KZ_SESSIONS, soon (any thread, never blocks: a queue of the
 * newest value per key, written by the session thread; it is kept while JetStream is away). */
void kz_cluster_session_put(struct kz_cluster *c, const char *key, const uint8_t *value, size_t n);
/* Only on the session thread (from cfg.session or cfg.session_tick), synchronously: writes
 * value under key if the key's revision is still rev (0: the key must not exist), or purges
 * the key if it is still at rev. 0, or -1: not written (another value came first, or
 * JetStream did not answer); *new_rev: the value's revision. */
int kz_cluster_session_update(struct kz_cluster *c, const char *key, const uint8_t *value, size_t n, uint64_t rev,
			      uint64_t *new_rev);
int kz_cluster_session_purge(struct kz_cluster *c, const char *key, uint64_t rev);
/* Only on the session thread: removes from KZ_SESSIONS the purge markers older than older_ms
 * (a purge leaves one per key). */
void kz_cluster_session_purge_markers(struct kz_cluster *c, uint32_t older_ms);
/* Writes value under key in KZ_TRUST, the same way. */
void kz_cluster_trust_put(struct kz_cluster *c, const char *key, const uint8_t *value, size_t n);
/* The wall time (Unix ns) at which this node last had in its log every record the stream held
 * (0: not yet since start). */
uint64_t kz_cluster_caught_up_ns(struct kz_cluster *c);
/* Has this node every record the stream held at since_ns (wall), and none held back behind a
 * gap? Per-publisher order across a failover (docs/CLUSTER.md "Order"): a CONNECT waits for it.
 * True after max_wait_ms from since_ns in any case (counted, logged). Never blocks. */
bool kz_cluster_settled(struct kz_cluster *c, uint64_t since_ns, uint32_t max_wait_ms);
/* True once the session thread has read the whole KZ_SESSIONS bucket. */
bool kz_cluster_sessions_synced(struct kz_cluster *c);

/* DIR/cluster.state (docs/CLUSTER.md "What each kizuna node keeps locally"): the line
 * "confirmed LOCAL ORIGIN [SSEQ]", then one "origin ID SEQ" per other node (each followed by
 * its "gap" lines) and the "span" lines. */
#define KZ_CLUSTER_MAX_ORIGINS 64
#define KZ_CLUSTER_MAX_GAPS 32
/* Per other node: the highest origin sequence taken, and the sequences below it not taken yet
 * (records the stream had after their successors: a re-publish after a failed one). */
struct kz_cluster_origin {
	char id[65];
	uint64_t seq;
	uint32_t n_gaps;
	struct { uint64_t lo, hi; } gaps[KZ_CLUSTER_MAX_GAPS];
};
/* Spans this node published out of order (docs/CLUSTER.md "Recovery"). After a failed publish,
 * and at a start, records above the confirmed watermark K can be in the stream already when
 * the ones between are published again: the stream then holds those after their successors.
 * Its replicas are prefixes of its leader, so a power loss that cuts the stream inside such a
 * span can keep a record above K and lose one below it: the stream's last record of ours does
 * not then say that it holds every record up to it. Each span: K (local, origin and stream
 * sequence of the watermark when it began) and the highest origin sequence published in it. */
#define KZ_CLUSTER_MAX_SPANS 16
struct kz_cluster_span {
	uint64_t wm_local, wm_origin, wm_sseq; /* the watermark K */
	uint64_t end;
};
struct kz_cluster_spans {
	struct kz_cluster_span v[KZ_CLUSTER_MAX_SPANS]; /* by watermark; they may overlap */
	uint32_t n;
};
/* Adds the span from the watermark (local, origin, sseq) to end; nothing when end <= origin or
 * when a span holds it already. Past KZ_CLUSTER_MAX_SPANS the one that ends lowest goes. True
 * when the list changed. Spans are kept apart when they overlap: a second failure before the
 * first span was passed leaves records of the first above the second's watermark, and a cut
 * among those must go back to the first's (kz_cluster_span_of). */
bool kz_cluster_span_add(struct kz_cluster_spans *s, uint64_t local, uint64_t origin, uint64_t sseq, uint64_t end);
/* Of the spans whose records (origin, end] include last, the one with the lowest watermark;
 * NULL when none does. */
const struct kz_cluster_span *kz_cluster_span_of(const struct kz_cluster_spans *s, uint64_t last);

struct kz_cluster_state {
	uint64_t confirmed_local, confirmed_origin;
	uint64_t confirmed_sseq; /* the stream sequence of the message with confirmed_origin (0: not known) */
	struct kz_cluster_origin origins[KZ_CLUSTER_MAX_ORIGINS];
	uint32_t n_origins;
	struct kz_cluster_spans spans; /* "span LOCAL ORIGIN SSEQ END" lines */
};
/* The follower's decision on the record with origin sequence s of origin o: true to take it
 * (the next one; one ahead, which opens a gap below it; one that fills a gap, counted in
 * *late), false for a duplicate. More than KZ_CLUSTER_MAX_GAPS gaps: the oldest is given up
 * (counted in *dropped). */
bool kz_cluster_origin_take(struct kz_cluster_origin *o, uint64_t s, uint64_t *late, uint64_t *dropped);
/* "gap ID LO HI" lines follow their origin's line (LO <= HI < its SEQ). 0, or minus the number
 * of the first line that is not valid. */
int kz_cluster_state_parse(const char *text, size_t n, struct kz_cluster_state *st);

/* A sequence header's value (Kz-Origin-Seq, Kz-Local-Seq): plain decimal digits that fit in 64
 * bits; 0 for anything else (the message is then not taken as a kizuna record). */
uint64_t kz_cluster_parse_seq(const char *v);
/* A batch (docs/CLUSTER.md "Batches"): a message with the header Kz-Count: n (2 or more) holds
 * the records of origin sequences Kz-Origin-Seq .. Kz-Origin-Seq + n - 1, in order, each as
 * a 4-byte big-endian length and that many bytes; its Kz-Local-Seq is its last record's. Without
 * Kz-Count a message is one record, its body the record itself. */
#define KZ_CLUSTER_BATCH_MAX 65536
/* Kz-Count's value: 1 when it is absent; 0 when it is not a number from 1 to KZ_CLUSTER_BATCH_MAX. */
uint64_t kz_cluster_batch_count(const char *v);
/* The record of the batch body (n bytes) at *off, which moves past it: false at the end or
 * when the frame there does not fit in the body or is empty. */
bool kz_cluster_batch_next(const uint8_t *body, size_t n, size_t *off, const uint8_t **rec, size_t *len);
/* Is body exactly count frames, none empty? */
bool kz_cluster_batch_valid(const uint8_t *body, size_t n, uint64_t count);

/* A node's consumer is kz-node-<id>, then kz-node-<id>~<gen> for each made
 * under a new name because the one before could not be deleted (its server did not answer:
 * docs/CLUSTER.md "Our consumer"). Name of generation gen: */
void kz_cluster_consumer_name(const char *node_id, unsigned gen, char *out, size_t len);
/* Generation of name if it is one of node_id's consumers, else -1. */
long kz_cluster_consumer_gen(const char *node_id, const char *name);
/* The pending count in a JetStream acknowledgement subject: $JS.ACK.<stream>.<consumer>.
 * <delivered>.<stream seq>.<consumer seq>.<time>.<pending> (9 tokens), or the newer form of 12
 * or more tokens (pending the 11th). -1 when reply is not such a subject. */
int64_t kz_cluster_ack_pending(const char *reply);
/* The fields of such a subject: how often the message was delivered, its stream sequence, its
 * consumer sequence (1: the first message this consumer ever delivered). False when reply is
 * not such a subject. */
struct kz_cluster_ack_info { uint64_t delivered, stream_seq, consumer_seq; };
bool kz_cluster_ack_parse(const char *reply, struct kz_cluster_ack_info *out);

/* The follower's floor (docs/CLUSTER.md "Our consumer"): every stream sequence <= floor was
 * decided (taken, or dropped as ours or as a duplicate) and acknowledged, so a consumer made
 * again starts at floor + 1 instead of the stream's start. Sequences above it decided out of
 * order (one lost in flight comes again after AckWait) wait in above[] until those below come;
 * with no room left the highest are forgotten (the floor stays lower: a consumer made again
 * from it delivers more again, dropped by origin sequence). id: what the stream held at floor
 * (known), compared with what it holds there before a consumer is made from it: a stream that
 * lost its tail and took other records at those sequences is followed from its start. */
#define KZ_CLUSTER_FLOOR_ABOVE 512
struct kz_cluster_mark {
	uint64_t sseq, oseq; /* stream sequence; Kz-Origin-Seq, of Kz-Origin node */
	char node[65];
};
struct kz_cluster_floor {
	uint64_t floor;
	bool known;
	struct kz_cluster_mark id;
	struct kz_cluster_mark above[KZ_CLUSTER_FLOOR_ABOVE]; /* by stream sequence */
	uint32_t n_above;
};
/* Starts over at floor (nothing known of what the stream holds there). */
void kz_cluster_floor_reset(struct kz_cluster_floor *f, uint64_t floor);
/* The message at stream sequence m->sseq is decided. */
void kz_cluster_floor_take(struct kz_cluster_floor *f, const struct kz_cluster_mark *m);

/* Publishes audit entry n (one line of DIR/audit, without its newline) to KZ_AUDIT, subject
 * kz.audit.<node id>, Nats-Msg-Id <node id>:<n>; synchronously, up to publish_timeout_ms.
 * 0, or -1: not published (JetStream away), try again later. */
int kz_cluster_audit_publish(struct kz_cluster *c, uint64_t n, const char *line, size_t len);
/* `kizuna audit verify --cluster NODE`: connects as cfg says, hands every entry of NODE in
 * KZ_AUDIT to entry() in stream order, then NODE's audit keys and head from KZ_TRUST to trust()
 * (key "pub", "mldsa.pub", "head"). A callback's non-zero return stops it. -1 with *why when
 * NATS or the stream cannot be read. */
int kz_cluster_audit_fetch(const struct kz_cluster_config *cfg, const char *node,
			   int (*entry)(void *ctx, const char *line, size_t len),
			   int (*trust)(void *ctx, const char *key, const uint8_t *v, size_t n), void *ctx, char *why,
			   size_t why_len);

/* Wakes the replicator: the store has made more records durable (any thread). */
void kz_cluster_kick(struct kz_cluster *c);

#endif
