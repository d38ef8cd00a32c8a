/* cluster_internal.h — what the cluster's files share (cluster.c: the replicator and the
 * follower; cluster_kv.c: the shared sessions). */
#ifndef KZ_CLUSTER_INTERNAL_H
#define KZ_CLUSTER_INTERNAL_H

#include "cluster/cluster.h"

#include <nats/nats.h>

#include <pthread.h>
#include <stdatomic.h>

#define STREAM "KZ_RECORDS"
#define BRIDGE "KZ_BRIDGE" /* cluster_bridge.c */

struct slot {
	uint64_t local_seq, sent_ms, sseq; /* sseq: the stream sequence JetStream stored it at */
	bool used, acked;
};

#define MAX_ORIGINS KZ_CLUSTER_MAX_ORIGINS

/* The highest origin sequence of each other node written to this node's log, and its gaps. */
#define origin kz_cluster_origin

/* The replicator's batch being filled (cluster_batch.c): frames of records in buf. */
struct kz_cluster_batch {
	uint8_t *buf;
	size_t len, cap;
	uint32_t n;
	uint64_t first_origin, last_local;
	char first_id[37];
	bool replay;        /* it repeats a remembered batch (bounds) */

	/* The bounds of the batches published and not yet confirmed, oldest first (a ring of
	 * bcap): after a failed publish what is published again from the watermark goes out in
	 * the same batches, with the same Nats-Msg-Id, so that JetStream drops what it already
	 * has. cursor: the next one to repeat (== count: none). */
	/* stored: read back from the stream after a start (at stream sequence sseq): not published
	 * again, taken as confirmed */
	struct kz_cluster_bound { uint64_t first, sseq; uint32_t n; bool stored; } *bounds;
	uint32_t bcap, head, count, cursor;
};

struct kz_cluster {
	struct kz_cluster_config cfg;
	char subject[96];
	char state_path[1100];      /* cfg.state_path points here */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, kicked;
	atomic_bool connected, reconnected, quorum, closed;
	natsConnection *nc;
	jsCtx *js;
	/* under lock */
	struct slot *ring;          /* [window], by origin sequence */
	uint64_t head_origin;       /* oldest origin sequence in flight (== next_origin: none) */
	uint64_t next_origin, next_local; /* what the scan gives next */
	uint64_t conf_origin, conf_local; /* the confirmed watermark */
	uint64_t conf_sseq;         /* the stream sequence of the message with conf_origin (0: not known) */
	bool resync;
	uint64_t saved_local;       /* what cluster.state last said */
	struct kz_cluster_spans spans; /* published out of order (cluster.h); saved before publishing */
	struct kz_cluster_batch batch; /* the replicator's own */
	struct kz_cluster_stats st;
	/* the follower */
	pthread_t fthread;
	bool fstarted;
	atomic_bool js_ready;
	/* Moving to another server (swap_server in cluster.c): js_ready goes false; the follower
	 * and the session thread drop their NATS objects and say so; kz_cluster_audit_publish
	 * holds js_rw (read) while it uses js. avoid: the server moved away from, tried last. */
	atomic_bool f_parked, k_parked;
	pthread_rwlock_t js_rw;
	char avoid[256];
	uint64_t elsewhere_ms;      /* the replicator's: when swap_server last asked another server */
	/* kz_cluster_quorum, without the lock: conf_local's copy, and when JetStream last confirmed
	 * a record or this node last had none waiting for it (monotonic ms) */
	_Atomic uint64_t conf_seen, progress_ms;
	atomic_bool audit_stream; /* KZ_AUDIT exists (made on the first audit publish) */
	struct origin origins[MAX_ORIGINS]; /* under lock */
	struct origin f_scratch[MAX_ORIGINS]; /* the follower's copy while it decides a batch */
	uint32_t n_origins;
	uint64_t f_done, f_failed;  /* under lock: follow() answers */
	pthread_cond_t fcond;
	pthread_cond_t tcond;       /* the bridge thread's wait: signalled when a CONNECT wants a look */
	pthread_mutex_t save_lock;  /* the replicator and the follower both write cluster.state */
	_Atomic uint64_t caught_up_ns;
	uint64_t late_taken, gaps_dropped; /* under lock: records taken into a gap; gaps given up */
	/* the follower's own: per origin (same index as origins), records held back behind a gap,
	 * in origin order, and since when its oldest open gap waits */
	struct held_list { struct held { uint64_t seq; void *obj; } *v; size_t n, cap; uint64_t since_ms; } held[MAX_ORIGINS];
	/* the follower's own: its floor (where a consumer made again starts), and whether our
	 * consumer started over below it (its server restarted: it lives in memory) */
	struct kz_cluster_floor floor;
	bool f_reset;
	char f_on[64], f_avoid[64]; /* the server our consumer was on; one it did not answer on */
	unsigned f_placed;          /* consumers made on f_avoid and deleted again, in a row */
	char f_why[160];            /* why making our consumer failed, as last logged ... */
	uint64_t f_why_ms;          /* ... and when (cluster_consumer.c, ensure_failed) */
	uint64_t f_lost_since;      /* since when (monotonic ms) our consumer has not answered; 0: it does */
	/* our consumer's name (kz_cluster_consumer_name: generation f_gen, found in JetStream once
	 * f_named) and earlier ones of ours left to delete (their deletion was not answered) */
	char f_name[96], f_old[4][96];
	unsigned f_gen, n_old;
	bool f_named;
	uint64_t f_scan_ms;         /* when (monotonic ms) the sweep last read JetStream's names of ours */
	uint64_t held_total, released_late; /* held now; released by the gap timeout */ /* wall time at which this node had every record the stream held */
	/* KV buckets (cluster_kv.c): shared sessions, trust documents */
	pthread_t kthread;
	bool kstarted;
	struct kv_queue { struct kv_put *v; size_t n, cap; } queues[2]; /* under lock: one per key */
	atomic_bool sessions_synced; /* the whole bucket was read once */
	kvStore *skv;               /* KZ_SESSIONS while open: the session thread's own */
	_Atomic uint64_t kv_puts, kv_updates, kv_errors, trust_puts, trust_updates;
	_Atomic uint64_t order_expired; /* kz_cluster_settled */
	_Atomic uint64_t swaps;        /* swap_server */
	_Atomic uint64_t consumers_remade; /* consumer_stalled */
	atomic_bool order_waiting;  /* kz_cluster_settled said false: cfg.caught_up when caught up */
	/* the latest CONNECT kz_cluster_settled said false to (wall ns): the follower ends an idle
	 * pull early and the bridge thread looks at once while it is newer than what they last
	 * established (caught_up_ns, tails_ns) */
	_Atomic uint64_t order_since_ns;
	/* under lock: the subject that ends the follower's idle pull ("": no puller yet); the
	 * bridge thread publishes an empty message to it for such a CONNECT (woken_ns: the
	 * order_since_ns it last did so for, its own) */
	char f_wake[160];
	uint64_t woken_ns;
	/* The bridge (cluster_bridge.c): its thread; under lock, the last record of ours it had
	 * confirmed on KZ_BRIDGE (b_local, origin sequence b_origin; 0: none); when KZ_RECORDS
	 * last confirmed a record of ours (a_moved_ms, monotonic ms, advance()) */
	pthread_t bthread;
	bool bstarted;
	uint64_t b_local, b_origin;
	_Atomic uint64_t a_moved_ms;
	_Atomic uint64_t bridged, bridge_episodes; /* records confirmed on it; times it began */
	atomic_bool bridging;
	/* Other nodes' bridged tails (cluster_adopt.c), under lock: per node with messages on
	 * KZ_BRIDGE, the origin sequence of its last bridged record (top); tails_ns: the wall time
	 * at which the last complete look began; bridge_seen: KZ_BRIDGE existed then;
	 * tails_wanted: a CONNECT waits for a newer look (kz_cluster_settled). */
	struct kz_cluster_tail {
		char id[65];
		uint64_t top;
		uint64_t d;        /* this node's records of it, without a gap, when last looked */
		uint64_t since_ms; /* since when top > d with d unmoved (monotonic; 0: not so) */
		uint64_t done;     /* published to KZ_RECORDS for it up to here ... */
		uint64_t done_ns;  /* ... by this wall time (0: never) */
		uint64_t retry_ms, warned_ms; /* after a failure: not before; when last said (monotonic) */
		uint64_t ok_since_ms; /* since when KZ_RECORDS has answered about it (0: it did not) */
	} tails[MAX_ORIGINS];
	uint32_t n_tails;
	uint64_t tails_next_ms, tails_last_ms; /* the bridge thread's own: when to look again; last looked */
	uint64_t tails_failed_ms;              /* ... and when a look last got no answer */
	_Atomic uint64_t tails_ns;
	atomic_bool bridge_seen, tails_wanted;
	_Atomic uint64_t adoptions, adopted_msgs; /* tails published for their node; its messages */
};
enum { KV_SESSIONS, KV_TRUST };

/* cluster.c */
/* Makes stream name on subjects (file storage, replicas, max_age_ns of age (0: none), 10-minute
 * duplicate window, direct gets allowed when direct); one that exists is updated to it (update)
 * or taken as it is. */
natsStatus kz_cluster_add_stream(jsCtx *js, const char *name, const char *subjects, uint32_t replicas,
				 int64_t max_age_ns, bool direct, bool update, jsErrCode *jerr);
natsStatus kz_cluster_publish_sync(struct kz_cluster *c, natsMsg *m, const char *stream, jsErrCode *jerr);
int kz_cluster_connect(struct kz_cluster *c, char *why, size_t why_len);
void kz_cluster_close(struct kz_cluster *c);
uint64_t kz_cluster_header_u64(natsMsg *m, const char *key);
/* Ends a subscription on nc that may still be receiving (a consumer's push, a late answer):
 * libnats 3.4.1 (Debian 12) can crash its reader thread when a subscription is destroyed while
 * a message for it is being taken in (nats.c issue #637, fixed in 3.6.0). Unsubscribed first,
 * then a flush: the server's PONG comes after every message it sent before the UNSUB, and the
 * reader takes them in order; then destroyed. A JetStream subscription's ephemeral consumer is
 * deleted with it. When no flush is answered (the connection is closed or its server stopped)
 * it waits 50 ms instead. */
void kz_cluster_sub_end(natsConnection *nc, natsSubscription *sub);
/* The same for a KV watcher (an ordered push consumer: the bucket's updates and the server's
 * idle heartbeats come to it at any time); kvWatcher_Destroy alone unsubscribes and frees at
 * once. */
void kz_cluster_watch_end(natsConnection *nc, kvWatcher *w);
/* Our consumer (cluster_consumer.c): made or found (0; -1: not now), made again (true: it is
 * gone, the follower drops its subscription), checked (ci: its info, NULL when it did not
 * answer; true: made again), the server it is on noted; earlier ones deleted (sweep: true when
 * one went). */
int kz_cluster_consumer_ensure(struct kz_cluster *c, uint64_t *bad_ms);
/* cluster_probe.c */
bool kz_cluster_js_answers(struct kz_cluster *c);
bool kz_cluster_stuck_long(struct kz_cluster *c, uint64_t stuck_ms, uint64_t *ping_ms);
jsOptions *kz_cluster_consumer_opts(const struct kz_cluster *c, jsOptions *o);
bool kz_cluster_consumer_remake(struct kz_cluster *c, const char *why, bool from_start, bool silent);
bool kz_cluster_consumer_check(struct kz_cluster *c, const jsConsumerInfo *ci, uint64_t *bad_ms);
void kz_cluster_consumer_on(struct kz_cluster *c, const jsConsumerInfo *ci);
bool kz_cluster_consumer_sweep(struct kz_cluster *c);
/* What identifies message m, at stream sequence sseq, for the floor (cluster_follow.c). */
void kz_cluster_mark_of(natsMsg *m, uint64_t sseq, struct kz_cluster_mark *mk);
/* Asks JetStream for node_id's consumers: the highest generation (0 when there is none), its
 * name in cur; into old (up to max_old, *n_old) every other one of them, or every one but keep
 * when keep is not NULL. -1: no answer, or (strict) JetStream said the stream is not found. */
long kz_cluster_consumer_find(jsCtx *js, const char *node_id, const char *keep, bool strict, char *cur, size_t len,
			      char (*old)[96], unsigned max_old, unsigned *n_old);
/* DIR/cluster.state into c (a file that does not parse: nothing, with a warning). */
void kz_cluster_state_load(struct kz_cluster *c);
void kz_cluster_state_save(struct kz_cluster *c, uint64_t local, uint64_t origin, uint64_t sseq);
/* cluster_batch.c: the replicator adds record seq (origin sequence origin) to its batch,
 * which goes out first when it is full; flush publishes it (asynchronously); drop forgets it
 * (published again from the watermark). -1: publishing failed; 1: the stream has the record
 * already (read back after a start), at stream sequence *stored_sseq: not added. */
int kz_cluster_batch_add(struct kz_cluster *c, uint64_t seq, const uint8_t *body, size_t n, const uint8_t id[16],
			 uint64_t origin, uint64_t conf_origin, uint64_t *stored_sseq);
int kz_cluster_batch_flush(struct kz_cluster *c);
/* Appends record seq (origin sequence origin) to b as one frame; -1: out of memory. The
 * message of b's records to subject, with the headers the follower reads. */
int kz_cluster_batch_put(struct kz_cluster_batch *b, uint64_t seq, const uint8_t *body, size_t n, const uint8_t id[16],
			 uint64_t origin);
natsStatus kz_cluster_batch_msg(const struct kz_cluster_batch *b, const char *subject, const char *node_id,
				natsMsg **out);
/* After a start: this node's messages in the stream above the watermark, read back (headers
 * only) from stream sequence from_sseq (0: the start): their records are taken as confirmed
 * instead of being published again (kz_cluster_batch_add says 1). */
void kz_cluster_batch_learn(struct kz_cluster *c, uint64_t from_sseq, uint64_t conf_origin, uint64_t last_origin);
void kz_cluster_batch_drop(struct kz_cluster *c);
void kz_cluster_batch_free(struct kz_cluster *c);
/* `kizuna cluster status --records`: reads every message on this node's subject (headers
 * only) and prints how many records are stored once, more than once, or missing. -1 when it
 * could not read them all (what it read is printed, marked). */
int kz_cluster_print_own_records(struct kz_cluster *c, FILE *out);
/* The origin sequence of a message's last record (a batch's), 0 when it has none. */
uint64_t kz_cluster_last_origin(natsMsg *m);
/* A node's last message in KZ_RECORDS (subject kz.rec.<node>): its last record's origin
 * sequence, its Kz-Local-Seq and its stream sequence (all 0 when it has none). */
struct kz_cluster_last {
	uint64_t origin, local, sseq;
};
enum { KZ_LAST_FOUND = 0, KZ_LAST_NONE = 1, KZ_LAST_NO_ANSWER = -1, KZ_LAST_NO_STREAM = -2 };
/* Asks KZ_RECORDS with a wait of wait_ms (0: the context's). KZ_LAST_NONE: the stream holds
 * nothing on subject; KZ_LAST_NO_ANSWER: no answer now (no leader), *st and *jerr say what
 * came back; KZ_LAST_NO_STREAM: the stream does not exist. */
int kz_cluster_last_of(jsCtx *js, const char *subject, int64_t wait_ms, struct kz_cluster_last *out, natsStatus *st,
		       jsErrCode *jerr);
/* cluster_follow.c */
void *kz_cluster_follower(void *arg);
/* On the bridge thread (with js_rw held): ends the follower's idle pull when a CONNECT came
 * after it last found itself caught up, once per such CONNECT (kz_cluster_settled). */
void kz_cluster_wake_follower(struct kz_cluster *c);
/* A CONNECT waits that came after the follower last found itself caught up: only the
 * follower's check (its consumer asked) can answer it. */
static inline bool kz_cluster_check_wanted(struct kz_cluster *c)
{
	return atomic_load(&c->order_since_ns) > atomic_load(&c->caught_up_ns);
}
void kz_cluster_held_expire(struct kz_cluster *c, bool everything);
/* cluster_bridge.c: the bridge's thread (on every following node: the tails below run with
 * the bridge off too) */
void *kz_cluster_bridge(void *arg);
/* cluster_adopt.c: looks at KZ_BRIDGE's other nodes' tails, and publishes to KZ_RECORDS, for
 * its node, a tail that this node lacks there (urgent: a CONNECT waits for it; else only a
 * tail whose node has put nothing more into KZ_RECORDS for cluster.bridge_adopt_ms). Holds
 * js_rw (read) from the caller. */
void kz_cluster_tails(struct kz_cluster *c);
/* Other nodes' last bridged records on KZ_BRIDGE (`kizuna cluster status`): -1 no answer, 0,
 * 1 the stream does not exist. What this node has of node id without a gap (lock held). */
struct kz_cluster_seen {
	char id[65];
	uint64_t top;
};
int kz_cluster_tails_look(struct kz_cluster *c, struct kz_cluster_seen *v, uint32_t *n);
/* The bridge thread's pause between turns: up to max_ms, shorter when a CONNECT wants a look
 * (kz_cluster_settled signals tcond), so that it waits for a look of a few milliseconds and
 * not for the thread's next turn. */
void kz_cluster_tails_wait(struct kz_cluster *c, uint32_t max_ms);
uint64_t kz_cluster_have_of(const struct kz_cluster *c, const char *id);
/* Lock held: does a node's bridged tail reach above what this node has of it without a gap,
 * and was it not published to KZ_RECORDS before caught_ns (the follower's caught_up_ns)? */
bool kz_cluster_tails_pending(const struct kz_cluster *c, uint64_t caught_ns);
/* cluster_kv.c */
void *kz_cluster_sessions_thread(void *arg);
void kz_cluster_puts_free(struct kz_cluster *c);


#endif
