/* mqtt_broker.h — the MQTT broker core: shards (one per network worker), sessions, clients,
 * routing, retained messages and shared subscriptions. Protocol code only: it never calls
 * libuv or OpenSSL; the network layer drives it through the functions below and supplies
 * struct mqtt_transport_ops.
 *
 * Threading. Each shard is owned by one worker thread and touched only by it. A session
 * lives on its client id's home shard (hash(client id) % shards); the network layer moves a
 * connection there before its CONNECT is processed, so takeover, queues and in-flight state
 * never cross threads. A PUBLISH is matched against the local subscription trie and handed by
 * reference to every other shard that has subscriptions, through per-destination outboxes
 * flushed once per loop iteration into the destination's inbox (one short lock per batch,
 * never per message). The retained store (mutex) and the shared-subscription registry
 * (rwlock, read only when shared subscriptions exist) are the only broker-wide state.
 */
#ifndef MQTT_BROKER_H
#define MQTT_BROKER_H

#include "base/kz_buf.h"
#include "base/kz_json.h"
#include "mqtt/mqtt_codec.h"
#include "store/store.h"
#include "mqtt/mqtt_msg.h"
#include "mqtt/mqtt_topic.h"
#include "mqtt/mqtt_trie.h"
#include "trust/idlimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct mqtt_limits {
	uint32_t origin_property;     /* 1: deliveries carry the user property kz-origin (the publisher) */
	uint32_t max_packet_size;     /* inbound bytes; advertised in CONNACK */
	uint32_t max_topic_len;
	uint32_t max_topic_levels;
	uint32_t max_subs_per_client;
	uint16_t max_inflight;        /* our Receive Maximum and the outbound window cap */
	uint32_t max_queued_msgs;     /* per session */
	uint64_t max_queued_bytes;    /* per session */
	uint32_t max_connections;     /* per node */
	uint32_t connect_timeout_ms;
	uint32_t max_unconnected_per_identity; /* connections of one identity before CONNECT; 0 = no cap */
	uint32_t max_publish_rate;    /* PUBLISH packets per second per client; 0 = off */
	uint16_t max_keepalive;       /* s; 0 = client's choice */
	uint32_t max_session_expiry;  /* s */
	uint16_t topic_alias_max;     /* inbound aliases accepted per connection */
	uint32_t max_out_buffer;      /* output bytes per connection: MQTT, TLS and the socket's queue */
	uint32_t slow_client_ms;      /* over max_out_buffer this long: DISCONNECT 0x97; 0 = never */
	uint64_t max_store_backlog;   /* bytes waiting for the store above which publishers are not read */
	uint64_t max_route_backlog;   /* bytes routed to other workers, not yet delivered, above which
				       * publishers are not read */
	uint32_t max_retained;        /* retained messages per node */
	uint32_t max_client_id_len;
	/* The network layer's (src/net), here with the other limits: */
	uint32_t handshake_timeout_ms;       /* a TLS handshake must finish this long after accept */
	uint32_t max_handshakes;             /* connections in their handshake, node-wide; 0 = no cap */
	uint32_t max_handshakes_per_address; /* of which from one source address; 0 = no cap */
	uint32_t close_linger_ms;            /* a closing connection's last bytes: then closed hard */
	uint32_t fd_reserve;                 /* descriptors kept free of connections */
};

void mqtt_limits_default(struct mqtt_limits *lim);

struct mqtt_session;
struct mqtt_client;
struct mqtt_shard;

/* Supplied by the network layer; all calls happen on the client's worker thread. */
struct mqtt_transport_ops {
	/* out gained bytes: flush them (coalesced, at the end of the loop iteration). */
	void (*want_flush)(void *transport);
	/* Flush what is pending, then close. mqtt_client_closed() follows. */
	void (*close)(void *transport);
	/* Move this connection to shard idx; mqtt_client_resume() follows there. */
	void (*migrate)(void *transport, unsigned idx);
	/* Stop (hold = true) or resume reading from the client; NULL = not supported. */
	void (*hold_reading)(void *transport, bool hold);
	/* Bytes the transport holds below `out` (TLS records, writes the kernel has not taken);
	 * NULL = none. Counted with out->len against limits.max_out_buffer. */
	size_t (*pending)(void *transport);
};

/* One subscription of a session (MQTT 5.0 §3.8.3.1 options). */
struct mqtt_sub {
	struct mqtt_session *session;
	char *filter;  /* owns; without any $share prefix */
	char *group;   /* owns; shared subscription group or NULL */
	uint32_t filter_len;
	uint32_t sub_id;
	uint8_t qos, retain_handling;
	bool no_local, retain_as_published;
	struct mqtt_replay *replay; /* owns; non-NULL while stored records are replayed */
	uint64_t seam_lo, seam_hi;  /* after a replay: the seqs it delivered from the log */
};

/* A replay of stored records to one subscription (kz-replay-since, docs/MQTT.md):
 *   REPLAYING: records [start, durable end) are read from the log in paced batches and
 *              delivered; live messages for the subscription are held meanwhile.
 *   SEAM:      the log is read up to scanned_end; once every held message knows its
 *              record's seq, held messages whose seq is in [start, scanned_end] are
 *              dropped (already replayed), the rest delivered in arrival order.
 *   LIVE:      the replay is freed; deliveries go straight through again, except a
 *              message whose record is in [start, scanned_end] (seam_lo/seam_hi): it was
 *              still on its way from another worker at the seam, and was replayed. */
struct mqtt_replay {
	uint64_t start, next, scanned_end;
	struct kz_reclog_pos pos;      /* where the last frame read was: the next scan's hint */
	struct mqtt_delivery *held; /* owns their references */
	uint32_t n_held, cap_held;
	uint64_t held_dropped;
	bool caught_up;
	uint32_t idx;               /* in the shard's replays[] */
	uint8_t min_qos;            /* a restored session's backlog: QoS 1/2 records only */
};

/* A message on its way to one session. */
struct mqtt_delivery {
	struct mqtt_msg *msg; /* holds a reference */
	uint32_t sub_id;
	uint32_t share_gid;   /* shared-subscription group it came through, 0 = none */
	uint16_t packet_id;
	uint8_t qos;
	uint8_t state;        /* enum mqtt_out_state, in flight only */
	bool retain;
};

/* Outbound QoS flow per message (MQTT 5.0 §4.3):
 *   QoS 1: SENT --PUBACK--> done
 *   QoS 2: SENT --PUBREC--> RELEASED (PUBREL sent) --PUBCOMP--> done
 * On reconnect SENT is resent with DUP=1, RELEASED resends PUBREL. */
enum mqtt_out_state { MQTT_OUT_SENT = 1, MQTT_OUT_RELEASED = 2 };

/* Session lifecycle:
 *   ONLINE (client != NULL) --connection closes--> OFFLINE (expire_at_ms set)
 *   OFFLINE --CONNECT with clean_start=0--> ONLINE (session present)
 *   OFFLINE --expiry passes / CONNECT with clean_start=1--> ended (freed)
 * Invariants: (1) n_inflight <= inflight_cap; (2) every inflight packet id is unique and
 * non-zero; (3) q_len <= lim.max_queued_msgs and q_bytes <= lim.max_queued_bytes;
 * (4) session->client->session == session when online. */
struct mqtt_session {
	struct mqtt_shard *shard;
	struct mqtt_client *client; /* borrowed; NULL when offline */
	char *client_id;            /* owns */
	uint32_t client_id_len;
	uint64_t uid;
	struct mqtt_sub **subs;     /* owns */
	uint32_t n_subs, cap_subs;
	struct mqtt_delivery *inflight; /* owns; inflight_cap slots, packet_id 0 = free */
	uint32_t n_inflight, inflight_cap;
	struct mqtt_delivery *queue;    /* owns; ring */
	uint32_t q_head, q_len, q_cap;
	uint64_t q_bytes;
	uint8_t *rx_qos2;               /* owns; 65536-bit set of inbound QoS 2 ids, lazy */
	uint32_t n_rx_qos2;
	uint16_t next_pid;
	uint32_t expiry_s;              /* Session Expiry Interval */
	uint64_t expire_at_ms;          /* when offline */
	struct mqtt_msg *will;          /* owns; NULL when none */
	uint8_t will_qos;
	bool will_retain;
	uint32_t will_delay_s;
	uint64_t will_at_ms;            /* pending delayed will, 0 = none */
	uint64_t dropped;
	bool is_overflowing;            /* log once per state change */
	bool persisted;                 /* has a row in DIR/sessions.db (expiry > 0) */
	char *peer_id;                  /* owns; identity it last connected with (will records) */
	uint64_t acked_saved;           /* the acknowledgement watermark last written */
	uint64_t acked_write_ms;
	/* Shared with the other nodes of a cluster (broker->share, docs/CLUSTER.md "Sessions"). */
	uint64_t share_epoch;           /* one more at each move between nodes */
	uint64_t offline_ns;            /* wall time its connection went, 0 while connected */
	bool share_dirty;               /* changed since last shared: share at the next tick */
	bool moved;                     /* another node serves it now: nothing more is shared */
	bool imported;                  /* taken from another node, not yet written here */
	/* The decision point (mqtt_policy.c, docs/POLICY.md). */
	struct kz_subject *subj;        /* owns; compiled for policy generation subj->gen */
	uint64_t dc_key[8];             /* decision cache: label hash -> dc_val (1 deny, 2 allow) */
	uint8_t dc_val[8];
	uint32_t dc_gen;                /* policy generation the cache is for */
	uint32_t subs_gen;              /* policy generation its subscriptions were re-evaluated for */
	uint64_t aud_delivered, aud_published, aud_withheld; /* since aud_since_ms, for summaries */
	uint64_t aud_since_ms;
};

/* Connection state:
 *   NEW --CONNECT ok--> CONNECTED --DISCONNECT/error/close--> CLOSING
 *   NEW --bad CONNECT / timeout--> CLOSING */
enum mqtt_client_state { MQTT_CLIENT_NEW, MQTT_CLIENT_CONNECTED, MQTT_CLIENT_CLOSING };

/* A connected client as listed for operators (mqtt_conns.c). */
struct mqtt_conn_entry {
	struct mqtt_conn_entry *prev, *next;
	uint64_t conn_id, since_ns; /* since: its CONNACK (wall) */
	char client_id[128];
	char identity[256];
	char serial[41];
	char addr[64];
	const char *tls_group;      /* static string, NULL when unknown */
	uint8_t version;            /* 4: MQTT 3.1.1, 5 */
	bool websocket;
};
struct mqtt_broker;
/* Copies up to max entries into out; *total: how many there are. */
size_t mqtt_broker_connections(struct mqtt_broker *b, struct mqtt_conn_entry *out, size_t max, size_t *total);
/* The connected clients counted by TLS group (static strings): up to max groups. */
size_t mqtt_broker_connection_groups(struct mqtt_broker *b, const char **groups, uint64_t *counts, size_t max);

struct mqtt_client {
	struct mqtt_broker *broker;
	struct mqtt_shard *shard;  /* NULL while migrating between shards */
	const struct mqtt_transport_ops *ops;
	void *transport;       /* borrowed */
	struct kz_buf *out;    /* borrowed from the transport; encoded packets go here */
	struct kz_buf in;      /* owns; an incomplete packet */
	uint64_t conn_id;
	char *peer_id;         /* owns; SPIFFE ID from the certificate */
	char cert_serial[41];  /* the certificate's serial (upper-case hex), "" when unknown */
	int64_t cert_not_after; /* Unix seconds; 0 when unknown */
	const char *tls_group;  /* negotiated key exchange (static string), NULL when unknown */
	const char *tls_suite;  /* "TLSv1.3 <cipher suite>" (static string), NULL when unknown */
	char cert_issuer[160];  /* the certificate's issuer DN (one line), "" when unknown */
	struct kz_idlimit_entry *idl; /* borrowed: its identity's limits; NULL before CONNECT or without limits */
	bool idl_counted;       /* counted among the identity's connections */
	char addr[64];
	enum mqtt_client_state state;
	uint8_t version;
	bool websocket;               /* over WebSocket on the HTTPS listener (set by its transport) */
	struct mqtt_conn_entry *listed; /* in the broker's list from CONNACK to close (mqtt_conns.c) */
	struct mqtt_session *session; /* borrowed; the session owns itself */
	uint16_t keep_alive;
	uint64_t accepted_ms, last_rx_ms;
	uint16_t peer_receive_max;
	uint32_t peer_max_packet;
	uint16_t peer_alias_max;
	bool request_problem_info;
	bool will_suppressed;         /* normal DISCONNECT received */
	bool connect_expiry_zero;     /* CONNECT had Session Expiry 0 (§3.14.2.2.2) */
	char **in_alias;              /* owns; [topic_alias_max + 1] topics */
	char **out_alias;             /* owns; [peer_alias_max + 1] topics */
	uint16_t out_alias_next;
	uint64_t rate_window_ms;
	uint32_t rate_count;
	uint32_t store_pending;       /* QoS 1/2 PUBLISHes waiting for the store */
	bool zombie;                  /* closed, freed when store_pending reaches 0 */
	bool store_held;              /* not read while the store's backlog is over its cap */
	/* CONNECT waiting, unconsumed, until this node has what the client published on the node
	 * that served it before (share->settled); since: when it first came (wall ns) */
	bool order_wait;
	unsigned migrate_to;       /* home shard + 1: the CONNECT moves there once its bytes are kept */
	uint64_t order_since_ns;
	uint16_t *q2_pending;         /* owns; QoS 2 packet ids waiting for the store */
	uint32_t n_q2_pending, cap_q2_pending;
	uint64_t over_since_ms;       /* output over limits.max_out_buffer since then; 0 = under it */
	uint64_t dropped;             /* QoS 0 messages dropped for this connection's output cap */
	uint64_t dropped_reported;    /* of which counted in the broker's slow-client table */
	struct mqtt_client *prev, *next; /* shard's client list */
};

/* A QoS 1/2 PUBLISH on its way to the store. Routed and acknowledged only when the store
 * says the record is durable (ARCHITECTURE.md "Threads and flow"): the shard that accepted it
 * routes the message (mqtt_broker_publish), then calls done for the publisher's answer. */
struct mqtt_stored {
	/* On the shard's worker, after routing: rc/why are the routing's answer (retained
	 * limits), status the store's. Owns st (and its msg reference) from then on. */
	void (*done)(struct mqtt_stored *st, uint8_t rc, const char *why);
	struct mqtt_client *client; /* kept alive (zombie) until done returns */
	struct mqtt_msg *msg;       /* holds a reference */
	struct mqtt_shard *shard;
	int status;                 /* from the store */
	uint64_t seq;               /* in the log, when stored */
	const char *why;            /* the routing's answer, while parked for the cluster */
	uint8_t rc;
	uint16_t packet_id;
	uint8_t qos;
};

enum mqtt_env_kind { MQTT_ENV_PUBLISH = 1, MQTT_ENV_DIRECT, MQTT_ENV_FOREIGN, MQTT_ENV_STORED,
		     MQTT_ENV_WAKE, MQTT_ENV_INJECT, MQTT_ENV_MOVED, MQTT_ENV_ADOPT };

/* A unit of work crossing from one shard to another. */
struct mqtt_env {
	uint8_t kind;
	uint8_t qos;
	bool retain;
	uint32_t sub_id;
	uint32_t share_gid;   /* DIRECT via a shared subscription: its group, for re-routing */
	uint8_t hops;         /* re-routes so far */
	struct mqtt_msg *msg; /* holds a reference */
	char *client_id;      /* owns; DIRECT, MOVED, ADOPT */
	uint64_t epoch;       /* MOVED: the epoch the other node took the session with */
	void *foreign;        /* FOREIGN: handed to broker->on_foreign */
	struct mqtt_stored *stored; /* STORED: the store's answer */
};

struct mqtt_envq {
	struct mqtt_env *v;
	uint32_t n, cap;
	uint64_t bytes; /* of the messages the envelopes hold */
};

struct mqtt_stats {
	atomic_uint_fast64_t msgs_in, msgs_out, bytes_in, bytes_out, dropped, connections;
	atomic_uint_fast64_t unconnected_closed; /* mqtt_shard_cap_unconnected */
};

struct mqtt_shard {
	struct mqtt_broker *broker;
	unsigned idx;
	struct kz_json_doc json;        /* broker->payload_check's parses on this shard */
	struct mqtt_trie subs;          /* this shard's non-shared subscriptions */
	atomic_uint n_subs;             /* read by other shards to skip broadcasting */
	struct mqtt_session **sessions; /* owns; open-addressed by client id */
	uint32_t n_sessions, cap_sessions;
	uint8_t wills_ready_ticks;      /* ticks since broker->share said wills may go (2: they go) */
	struct mqtt_client *clients;    /* list head */
	uint32_t n_clients;
	struct mqtt_envq *outbox;       /* [n_shards] */
	struct kz_store_item *st_items; /* records for the store, handed over once per iteration */
	uint32_t st_n, st_cap;
	pthread_mutex_t inbox_lock;
	struct mqtt_envq inbox;
	struct mqtt_envq draining;
	atomic_uint_fast64_t inbox_bytes; /* messages posted to this shard, not yet drained */
	struct mqtt_stats stats;
	uint64_t now_ms;                /* refreshed by the worker each iteration */
	struct mqtt_sub **replays;      /* subscriptions replaying stored records */
	uint32_t n_replays, cap_replays;
	bool wake_posted;
	uint64_t durable_seen[4];       /* the store's durable end at the last 4 ticks */
	uint64_t unrouted_seen[4];      /* and the broker's unrouted_floor (0: none) */
	uint32_t n_store_held;          /* clients held for the store's backlog */
	uint32_t n_order_wait;          /* clients whose CONNECT waits (order_wait) */
	atomic_bool order_kick;         /* mqtt_broker_connects_kick: ask them again */
	uint32_t ticks;
	uint32_t policy_gen_seen;       /* sessions re-evaluated for this policy generation */
	uint64_t revoked_gen_seen;      /* connections checked against this revocation set */
	uint64_t cert_checked_ms;       /* last sweep for revoked and expired certificates */
	/* Acknowledgements waiting for the cluster (docs/CLUSTER.md): routed, durable here, not
	 * yet confirmed by JetStream; in log order. */
	struct mqtt_stored **parked;
	uint32_t n_parked, cap_parked;
	atomic_uint parked_hint;        /* n_parked, for the cluster's thread */
	atomic_bool repl_woken;         /* a wake for the parked ones is on its way */
};

struct mqtt_share_member {
	unsigned shard;
	char *client_id; /* owns */
	uint8_t qos;
	uint32_t sub_id;
	atomic_bool online; /* its session has a connection (set by the session's shard) */
};

/* One $share/<group>/<filter>. Each message goes to one member (MQTT 5.0 §4.8.2): the next
 * online member in round-robin order, else the next member (its session queues it). A
 * message whose member vanished before it arrived, and the unacknowledged and queued
 * messages of a member whose session ends, are sent to another member (§4.8.2 "SHOULD"). */
struct mqtt_share_group {
	uint32_t gid;         /* never reused: deliveries refer to their group by it */
	char *group, *filter; /* owns */
	uint32_t filter_len;
	struct mqtt_share_member *m; /* owns */
	uint32_t n, cap;
	atomic_uint rr;
	struct mqtt_share_group *next;
};

#define MQTT_SLOW_MAX 256
struct mqtt_slow_entry {
	char client_id[128], identity[256];
	uint64_t dropped, disconnects, updated_ms;
};

/* Persistent sessions shared with the other nodes of a cluster (docs/CLUSTER.md "Sessions");
 * set by the node before the workers run, NULL when alone. */
struct mqtt_share_ops {
	/* On the session's home worker, at a CONNECT with clean start 0 for a client id this node
	 * holds no session for: the session another node served (or ended: a tombstone), with
	 * acked_through translated into this node's log, and its epoch; false when none. *hold is
	 * given to release(). */
	bool (*fetch)(void *ctx, const char *client_id, struct kz_state_session *out, uint64_t *epoch, bool *ended,
		      void **hold);
	void (*release)(void *ctx, void *hold);
	/* The session as it is now (ended: it ended here); any worker, must not block. */
	void (*put)(void *ctx, const struct kz_state_session *s, uint64_t epoch, bool ended);
	/* At a CONNECT with a client id, first seen at since_ns (wall): may it be answered now?
	 * false while this node has not yet taken every record the cluster held when the CONNECT
	 * came (what the client may have published on another node is delivered here before what
	 * it publishes now: per-publisher order across a failover). The node bounds the wait.
	 * Must not block. */
	bool (*settled)(void *ctx, uint64_t since_ns);
	/* May the will of a session without a connection be published now? false while another
	 * node may have taken the session (and its will) during this node's absence: until the
	 * node has read the other nodes' sessions after its start. Any worker, must not block. */
	bool (*wills_ready)(void *ctx);
};

struct mqtt_broker {
	struct mqtt_limits lim;
	struct mqtt_topic_limits topic_lim;
	unsigned n_shards;
	struct mqtt_shard *shards;   /* owns [n_shards] */
	pthread_mutex_t retained_lock;
	pthread_mutex_t conns_lock;  /* conns: the connected clients (mqtt_conns.c) */
	struct mqtt_conn_entry *conns;
	struct mqtt_trie retained;   /* value = struct mqtt_msg* */
	uint32_t n_retained;
	pthread_rwlock_t share_lock;
	struct mqtt_share_group *groups;
	uint32_t next_gid;           /* under share_lock (write) */
	atomic_uint n_share_members;
	atomic_uint_fast64_t next_uid, next_conn_id;
	atomic_uint n_connections;
	atomic_uint_fast64_t publish_refused[256]; /* refused PUBLISHes by reason code, for /metrics */
	atomic_bool is_shutting_down;
	struct kz_store *store;      /* NULL: nothing is stored (unit tests) */
	struct kz_state *state;      /* NULL: sessions are not persisted */
	atomic_bool state_failing;   /* log session-state write errors once */
	uint64_t final_durable;      /* the store's durable end when it closed */
	struct mqtt_envq *store_out; /* [n_shards], store thread only: answers of one batch */
	char node_id[64];            /* origin node of the records accepted here */
	/* The policy in force (docs/POLICY.md); NULL: none (every authenticated identity may
	 * do everything, records are not labelled). Swapped whole on reload; a snapshot stays
	 * allocated until the broker is freed (the node keeps them), so readers need no lock. */
	_Atomic(struct kz_policy *) policy;
	uint32_t audit_summary_ms;   /* allowed deliveries and publishes: one audit entry per session per interval */
	/* Serials revoked by the CA (trust/ca.h), swapped whole on reload and kept until the
	 * broker is freed, like the policy; NULL: none. Each shard closes the connections of
	 * revoked or expired certificates at once after a swap and every cert_check_ms. */
	_Atomic(const struct kz_revoked *) revoked;
	uint32_t cert_check_ms;
	struct kz_idlimits *idlimits; /* per-identity limits (trust/idlimit.h); NULL: none */
	/* Clients whose output went over limits.max_out_buffer: QoS 0 drops and slow-client
	 * disconnects per client id, for /metrics. Bounded: the least recently updated entry
	 * makes room. Written by the shards at their tick, read by /metrics. */
	pthread_mutex_t slow_lock;
	struct mqtt_slow_entry *slow;  /* owns [MQTT_SLOW_MAX] */
	uint32_t n_slow;
	atomic_uint_fast64_t slow_disconnects;
	/* The cluster (docs/CLUSTER.md): with repl_gate, a QoS 1/2 acknowledgement also waits
	 * until every record of this node up to its own is in JetStream (repl_confirmed, set by
	 * mqtt_broker_repl_confirmed); repl_ok (may be NULL) says whether JetStream answers in
	 * time: when it does not, new QoS 1/2 publishes are refused (cluster.on_quorum_loss). */
	bool repl_gate;
	const struct mqtt_share_ops *share; /* NULL: sessions are this node's alone */
	void *share_ctx;
	_Atomic uint64_t repl_confirmed;
	/* The lowest log sequence number of a durable record not yet routed to the subscribers
	 * (a followed record held back behind a gap: docs/CLUSTER.md), 0: none. Acknowledgement
	 * watermarks of persistent sessions stay below it (mqtt_broker_unrouted). */
	_Atomic uint64_t unrouted_floor;
	bool (*repl_ok)(void *ctx);
	void *repl_ctx;
	/* Wakes shard idx's worker after its inbox gained work (any thread). */
	void (*wake)(void *ctx, unsigned idx);
	void (*on_foreign)(void *ctx, unsigned idx, void *foreign);
	void *ctx;
	/* A service's check of what is published on its topics (the entity picture's updates on
	 * kz/entity/<id>): NULL when the payload may be stored, else why not (the PUBLISH is
	 * refused with 0x99 and that reason string). doc is the shard's, for a JSON parse.
	 * NULL: no check. */
	const char *(*payload_check)(struct kz_json_doc *doc, const uint8_t *topic, size_t topic_len, const uint8_t *p,
				     size_t n);
	/* A subscription made with the user property kz-snapshot (docs/ENTITIES.md "Over
	 * MQTT"): the service delivers its current picture to it, after the SUBACK, on the
	 * shard's thread (through mqtt_session_deliver: the decision point applies). NULL: none. */
	void (*sub_snapshot)(void *ctx, struct mqtt_sub *sub);
	void *sub_snapshot_ctx;
	/* A service that acts on PUBLISHes to its topics (tasks, docs/TASKS.md "MQTT"), after the
	 * decision point allowed them and before they are stored: NULL to go on, else why the
	 * PUBLISH is refused, with *rc its reason code. identity: the publisher's; label: the
	 * record's canonical label (NULL without policy). Any shard's thread. NULL: none. */
	const char *(*service_publish)(void *ctx, const char *identity, const uint8_t *topic, size_t topic_len,
				       const uint8_t *p, size_t n, const char *label, uint8_t *rc);
	void *service_ctx;
};

/* Broker: created before the workers start, freed after they stop. */
int mqtt_broker_init(struct mqtt_broker *b, const struct mqtt_limits *lim, unsigned n_shards);
void mqtt_broker_cleanup(struct mqtt_broker *b);
unsigned mqtt_broker_home(const struct mqtt_broker *b, const uint8_t *client_id, size_t n);
/* Sums the shards' counters. */
void mqtt_broker_stats(struct mqtt_broker *b, uint64_t out[7]);
/* Calls fn for each entry of the slow-client table (under its lock; fn must not block). */
void mqtt_broker_slow_clients(struct mqtt_broker *b, void (*fn)(void *ctx, const struct mqtt_slow_entry *e),
			      void *ctx);
/* Posts a FOREIGN envelope (net-layer work, e.g. a migrating connection) to shard idx from
 * any thread; takes foreign. */
int mqtt_broker_post_foreign(struct mqtt_broker *b, unsigned idx, void *foreign);

/* A durable record that did not come from a client of this node (another node's, followed
 * from the cluster's stream): shard idx keeps it as retained when it is, and routes it to
 * every matching subscriber under the decision point, as for a local publish (any thread;
 * takes a reference to m). */
int mqtt_broker_inject(struct mqtt_broker *b, unsigned idx, struct mqtt_msg *m);
/* A message from a stored record (replays, retained messages at start, records followed from
 * the cluster): its topic, payload, label, QoS, retain flag and the properties it forwards,
 * rebuilt from the attributes (mqtt_record.c). NULL when out of memory. */
struct mqtt_msg *mqtt_msg_from_record(const struct mqtt_broker *b, const struct kz_record *r);
/* Another node took client_id's session with epoch (any thread): shard-side, a session held
 * here with a lower epoch (or the same, when tie_wins) ends without ending for the cluster,
 * its connection gets DISCONNECT 0x8E; one with a higher epoch is shared again. */
int mqtt_broker_session_moved(struct mqtt_broker *b, const char *client_id, uint64_t epoch, bool tie_wins,
			      bool ended);
/* Every record of this node with a log sequence <= seq is in JetStream (any thread): the
 * acknowledgements waiting for it go out. */
void mqtt_broker_repl_confirmed(struct mqtt_broker *b, uint64_t seq);
/* Durable records from seq on may not have reached their subscribers yet (0: all have): no
 * persistent session's acknowledgement watermark passes seq - 1 meanwhile (any thread). */
void mqtt_broker_unrouted(struct mqtt_broker *b, uint64_t seq);

/* Shard work, on its worker thread. */
void mqtt_shard_drain(struct mqtt_shard *s);   /* process the inbox */
void mqtt_shard_flush(struct mqtt_shard *s);   /* hand outboxes to other shards */
void mqtt_shard_tick(struct mqtt_shard *s);    /* timers: keep alive, wills, expiry */
void mqtt_shard_shutdown(struct mqtt_shard *s);/* DISCONNECT 0x8B to all, close */
/* Publishes a message accepted on shard s: keeps it as its topic's retained message when
 * asked, then routes it. rc and why: what the publisher's acknowledgement says (0x97 when the
 * retained limit was reached: delivered, not retained). */
void mqtt_broker_publish(struct mqtt_shard *s, struct mqtt_msg *m, uint8_t *rc, const char **why);
/* Routes a message accepted on shard s to every matching subscriber (takes nothing). */
void mqtt_shard_route(struct mqtt_shard *s, struct mqtt_msg *msg);

/* Retained store (any thread). Takes a reference when storing; empty payload deletes. */
int mqtt_retained_set(struct mqtt_broker *b, struct mqtt_msg *msg);
/* Makes a stored record a topic's retained message again (start-up, from the index).
 * Records whose Message Expiry has passed at now_wall_ns are skipped. */
int mqtt_retained_restore(struct mqtt_broker *b, const struct kz_record *r, uint64_t now_wall_ns);
/* Re-creates a persistent session from DIR/sessions.db (start-up, before the workers run):
 * offline, with its subscriptions, its will and expiry counted from when it went offline
 * (or from now, if it was connected when the node stopped), and the QoS 1/2 records after
 * its acknowledgement watermark waiting for it (a replay that runs when it reconnects). */
int mqtt_broker_restore_session(struct mqtt_broker *b, const struct kz_state_session *p, uint64_t now_wall_ns);
/* Cluster: this node took client_id's session from a node that died (docs/CLUSTER.md "A node
 * that died"): its home worker makes it from share->fetch, without a connection, as a restart
 * makes a stored one (its will and expiry run here). Any thread. */
int mqtt_broker_session_adopt(struct mqtt_broker *b, const char *client_id);
/* The store's batch_end: hands each shard the answers of the batch in one step. */
void mqtt_broker_store_batch_end(void *broker);
/* Writes every persistent session's acknowledgement watermark, after the workers ended and
 * every stored record was routed; durable_end: the store's final durable end. */
void mqtt_broker_save_sessions(struct mqtt_broker *b, uint64_t durable_end);

/* Clients. mqtt_client_new takes ownership of peer_id. */
struct mqtt_client *mqtt_client_new(struct mqtt_shard *s, const struct mqtt_transport_ops *ops,
				    void *transport, struct kz_buf *out, char *peer_id,
				    const char *addr);
/* Bytes from the peer (decrypted). */
void mqtt_client_input(struct mqtt_client *c, const uint8_t *p, size_t n);
/* After migrate(): the client now belongs to shard s; processes buffered input. */
void mqtt_client_resume(struct mqtt_client *c, struct mqtt_shard *s, void *transport,
			struct kz_buf *out);
/* Detaches from a shard before migration (the transport will call resume on the target). */
void mqtt_client_detach(struct mqtt_client *c);
/* Has c sent no CONNECT for a while after its handshake (the per-identity cap's count)? */
bool mqtt_client_unconnected(const struct mqtt_client *c, uint64_t now);
/* The shard's tick, with the number of its connections mqtt_client_unconnected says: an
 * identity's ones past its share of limits.max_unconnected_per_identity are closed, the
 * oldest first. Returns how many. */
unsigned mqtt_shard_cap_unconnected(struct mqtt_shard *s, size_t idle);
/* The shard's tick: the CONNECTs that wait for order (share->settled) are asked again. */
void mqtt_shard_connects_retry(struct mqtt_shard *s);
/* Any thread: every shard asks its waiting CONNECTs again now (the cluster caught up). */
void mqtt_broker_connects_kick(struct mqtt_broker *b);
/* The transport drained its output: resume queued deliveries. */
void mqtt_client_writable(struct mqtt_client *c);
/* The transport closed; frees c. */
void mqtt_client_closed(struct mqtt_client *c);
/* Sends DISCONNECT (MQTT 5 only) with rc and why, then closes. */
void mqtt_client_disconnect(struct mqtt_client *c, uint8_t rc, const char *why);

/* Sessions (internal to the broker, exposed for tests). */
struct mqtt_session *mqtt_session_new(struct mqtt_shard *s, const uint8_t *id, size_t n);
void mqtt_session_free(struct mqtt_session *ss);
struct mqtt_session *mqtt_session_find(struct mqtt_shard *s, const uint8_t *id, size_t n);
/* Ends the session: publishes a pending will, drops subscriptions, frees it. */
void mqtt_session_end(struct mqtt_session *ss);
/* Queues or sends one message to the session. */
void mqtt_session_deliver_shared(struct mqtt_session *ss, struct mqtt_msg *msg, uint8_t qos,
				 uint32_t sub_id, uint32_t share_gid);
void mqtt_session_deliver(struct mqtt_session *ss, struct mqtt_msg *msg, uint8_t qos,
			  bool retain, uint32_t sub_id);
/* Sends queued messages while the window allows. */
void mqtt_session_pump(struct mqtt_session *ss);
/* Resends in-flight messages after reconnect (§4.4). */
void mqtt_session_resend(struct mqtt_session *ss);
/* Handles PUBACK/PUBREC/PUBCOMP from the client. */
void mqtt_session_ack(struct mqtt_session *ss, enum mqtt_type type, uint16_t pid, uint8_t reason);
/* Adds or replaces a subscription; *existed tells whether it replaced one. */
int mqtt_session_subscribe(struct mqtt_session *ss, const struct mqtt_sub_entry *e,
			   const uint8_t *group, size_t group_len, const uint8_t *filter,
			   size_t filter_len, uint32_t sub_id, bool *existed);
/* Returns 0 when removed, KZ_ENOTFOUND when there was none. */
int mqtt_session_unsubscribe(struct mqtt_session *ss, const uint8_t *f, size_t n);
/* Publishes the will now (used on expiry of the delay or the session). */
void mqtt_session_fire_will(struct mqtt_session *ss);
bool mqtt_session_invariants_ok(const struct mqtt_session *ss);

/* Outbound PUBLISH encoding (client.c); false when it could not be sent. */
bool mqtt_client_send_publish(struct mqtt_client *c, const struct mqtt_delivery *d, bool dup);
void mqtt_client_send_ack(struct mqtt_client *c, enum mqtt_type type, uint16_t pid,
			  uint8_t reason, const char *why);
/* Room under limits.max_out_buffer for more sends (QoS 0 is dropped, QoS 1/2 wait). */
bool mqtt_client_can_send(const struct mqtt_client *c);
/* Bytes queued for the connection: MQTT packets, TLS records, unsent writes. */
size_t mqtt_client_output(const struct mqtt_client *c);

#endif
