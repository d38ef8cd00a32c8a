/* net.h — the transport: TLS 1.3 connections over libuv, the record layer, worker threads
 * with one loop each, and listeners. It knows no protocol: MQTT, HTTPS and enrolment plug
 * in through struct net_proto (wired in src/node). */
#ifndef NET_H
#define NET_H

#include "base/kz_buf.h"

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* ---------- TLS contexts ---------- */

struct kz_revoked;
struct kz_ca;

/* What the server checks beyond the chain; owned by the caller, outlives the SSL_CTX. */
struct net_tls_trust {
	const char *trust_domain;          /* client identities must be in it */
	_Atomic(const struct kz_revoked *) revoked; /* refused serials; swapped on reload, may be NULL */
	bool enroll;                       /* offer ALPN "kizuna-enroll/1" (no client certificate) */
	bool require_pq;                   /* only X25519MLKEM768 (tls.require_pq) */
	uint32_t max_cert_lifetime_s;      /* client certificates valid longer are refused; 0: no cap */
	/* Why revocation status is unknown (the CRL went missing, was rolled back at start, or is
	 * past its nextUpdate): new handshakes are refused while set; NULL: the CRL is good. */
	_Atomic(const char *) crl_failing;
};

struct net_tls_config {
	const char *ca_file, *cert_file, *key_file;
	const char *groups; /* colon list; NULL = the default */
	struct net_tls_trust *trust; /* server only */
};

/* Server: TLS 1.3 only, client certificate required and verified against ca_file, no session
 * tickets (every connection is fully authenticated). NULL with *why on failure. */
SSL_CTX *net_tls_server_ctx(const struct net_tls_config *cfg, char *why, size_t why_len);
/* HTTPS: as the server context, but the client certificate is optional (browsers), ALPN
 * http/1.1, no enrolment. */
SSL_CTX *net_tls_https_ctx(const struct net_tls_config *cfg, char *why, size_t why_len);
/* Client: TLS 1.3 only, server verified against ca_file, our certificate presented. */
SSL_CTX *net_tls_client_ctx(const struct net_tls_config *cfg, char *why, size_t why_len);
/* Frees a context of the above (NULL: nothing). */
void net_tls_ctx_free(SSL_CTX *ctx);
/* The single spiffe:// URI SAN of the peer certificate as a new string; NULL with *why when
 * there is none or more than one URI SAN. */
char *net_tls_peer_spiffe(SSL *ssl, const char **why);
/* What a server connection's client certificate says, after the handshake. */
struct net_peer {
	char *id;            /* the SPIFFE ID (malloc'd), or NULL: refused (net_tls_peer's answer says why) */
	char serial[41];     /* upper-case hex (KZ_SERIAL_HEX), "" when there is no certificate */
	char issuer[160];    /* one-line issuer name */
	int64_t not_after;   /* Unix seconds; 0: unknown */
};
/* Fills p from ssl's peer certificate; NULL when the identity is accepted, else why not. */
const char *net_tls_peer(SSL *ssl, struct net_peer *p);
/* The checks every client certificate passes during the handshake (besides the chain and
 * its validity window, which OpenSSL verifies): exactly one URI SAN, a SPIFFE ID
 * spiffe://<trust_domain>/<org>/<kind>/<name> with kind user, sensor, service or node, not
 * a CA, an extended key usage that includes clientAuth. NULL when it passes, else why not;
 * *id (when not NULL) receives the malloc'd SPIFFE ID on success. */
const char *net_tls_check_client_cert(X509 *cert, const char *trust_domain, char **id);
/* TLS handshakes the server refused, by reason (for /metrics). */
enum net_tls_fail { NET_TLS_FAIL_IDENTITY, NET_TLS_FAIL_NO_CERT, NET_TLS_FAIL_UNKNOWN_CA, NET_TLS_FAIL_EXPIRED,
		    NET_TLS_FAIL_REVOKED, NET_TLS_FAIL_CRL, NET_TLS_FAIL_VERSION, NET_TLS_FAIL_GROUP, NET_TLS_FAIL_OTHER,
		    NET_TLS_FAIL_N };
extern const char *const net_tls_fail_names[NET_TLS_FAIL_N];
uint64_t net_tls_failures(enum net_tls_fail reason);
/* "TLSv1.3 <cipher suite>" of an established connection, as a static string. */
const char *net_tls_suite(SSL *ssl);
/* True when the server only accepts the hybrid post-quantum group (tls.require_pq). */
bool net_tls_requires_pq(SSL *ssl);
/* The default groups: the hybrid post-quantum group first (docs/PQC.md). */
#define NET_TLS_DEFAULT_GROUPS "X25519MLKEM768:X25519:P-256"
/* True when the client negotiated the enrolment protocol (ALPN kizuna-enroll/1). */
bool net_tls_is_enroll(SSL *ssl);
/* Why the identity checks refused the client's certificate in this handshake, or NULL. */
const char *net_tls_refusal(SSL *ssl);
/* Human-readable OpenSSL error queue (drains it). */
void net_tls_errors(char *buf, size_t len);

/* ---------- the TLS 1.3 record layer after the handshake (net_rl.c) ---------- */

/* A server connection's application traffic keys, once OpenSSL's handshake is done: the SSL
 * object can then be freed (docs/MQTT.md "Memory"). */
struct net_rl;
/* The traffic secrets of an established server SSL (captured during its handshake), wiped
 * from the SSL as they are taken; 0 when there are both. */
int net_tls_take_secrets(SSL *ssl, uint8_t client[48], uint8_t server[48], size_t *len);
struct net_rl *net_rl_new(SSL *ssl, const uint8_t *client_secret, const uint8_t *server_secret, size_t len);
void net_rl_free(struct net_rl *rl);               /* and its BIO */
void net_rl_set_bio(struct net_rl *rl, BIO *bio); /* takes a reference */
BIO *net_rl_bio(const struct net_rl *rl);
const char *net_rl_group(const struct net_rl *rl);
/* One record of type (application_data 23, alert 21, handshake 22) with n <= 16384 bytes of
 * content into out (n + 22 bytes); its length, 0 on failure. */
size_t net_rl_seal(struct net_rl *rl, uint8_t type, const uint8_t *p, size_t n, uint8_t *out);
/* Decrypts one whole record (header included) into out (>= reclen); 0 with the inner type
 * and content length, -1 when it does not authenticate or is malformed. */
int net_rl_open(struct net_rl *rl, const uint8_t *rec, size_t reclen, uint8_t *out, size_t *outlen, uint8_t *type);
/* The next read or write traffic secret (KeyUpdate, RFC 8446 §7.2). */
int net_rl_key_update(struct net_rl *rl, bool write);

/* ---------- one event loop's connection machinery ---------- */

struct net_conn;

struct net_conn_cbs {
	void (*on_open)(struct net_conn *c);                           /* handshake done */
	void (*on_data)(struct net_conn *c, const uint8_t *p, size_t n);
	void (*on_writable)(struct net_conn *c);                       /* output drained */
	void (*on_close)(struct net_conn *c);                          /* before free */
};

struct net_loop {
	uv_loop_t *loop;
	uv_check_t check;         /* flushes dirty connections once per iteration */
	struct net_conn *dirty;   /* list via dirty_next */
	struct net_conn *paused;  /* used their read budget this iteration; via paused_next */
	uint64_t iteration;
	uint32_t read_budget;     /* socket bytes per connection per iteration */
	uint32_t write_high;      /* output backlog (bytes) above which a connection is not read */
	void (*before_flush)(struct net_loop *nl);
	void *user;
	/* Deadlines (net_loop_sweep): server connections still in their TLS handshake, oldest
	 * first, closed handshake_ms after accept; closing connections, oldest first, closed
	 * hard linger_ms after the close began (a peer that reads nothing never lets the
	 * close_notify and FIN out). */
	struct net_conn *hs_head, *hs_tail, *lg_head, *lg_tail;
	uint32_t n_hs, handshake_ms, linger_ms;
	atomic_uint *hs_total;    /* handshaking connections of every loop; may be NULL */
	uint32_t max_hs, max_hs_per_addr; /* caps of net_conn_accept_fd; 0: none */
	unsigned idx;             /* the server's worker running this loop */
	uint64_t hs_timeouts, hs_evicted, lingered; /* counters (this loop's thread) */
	uint8_t rbuf[65536];      /* socket reads */
	uint8_t pbuf[65536];      /* decrypted bytes */
};

enum net_conn_flags {
	NET_CONN_HANDSHAKEN = 1u << 0, NET_CONN_CLOSING = 1u << 1, NET_CONN_DIRTY = 1u << 2,
	NET_CONN_MIGRATING = 1u << 3, NET_CONN_IS_CLIENT = 1u << 4, NET_CONN_CLOSED = 1u << 5,
	NET_CONN_READ_PAUSED = 1u << 6,  /* read budget used up; resumed at the iteration's end */
	NET_CONN_READ_BLOCKED = 1u << 7, /* our output to it is backed up; resumed as it drains */
	NET_CONN_READ_HELD = 1u << 8,    /* the protocol layer asked: net_conn_hold_reading() */
};

enum net_conn_list { NET_LIST_NONE, NET_LIST_HANDSHAKE, NET_LIST_LINGER };

struct net_conn {
	uv_tcp_t tcp;             /* first: handle->data is the conn */
	struct net_loop *nl;
	const struct net_conn_cbs *cbs;
	void *user;               /* the protocol's state of this connection */
	void *proto;              /* the protocol's shared state (set by whoever accepted or adopted c) */
	SSL *ssl;                 /* owns; NULL once rl has taken over */
	struct net_rl *rl;        /* owns; the record layer after the handshake (server side) */
	struct kz_buf out;        /* plaintext waiting to be encrypted */
	uint32_t flags;
	size_t write_pending;     /* encrypted bytes handed to uv_write, not yet done */
	size_t write_high;        /* pause threshold for on_writable */
	struct net_conn *dirty_next, *paused_next;
	uint64_t read_iteration;  /* nl->iteration of read_bytes */
	size_t read_bytes;
	struct net_conn *t_prev, *t_next; /* in nl's handshake or linger list (t_list) */
	uint8_t t_list;
	uint64_t deadline_ms;
	uint8_t src[16];          /* the peer's address (IPv4 as ::ffff:a.b.c.d) */
	char addr[64];
	char why[240];            /* client side: why the connection failed or ended, "" if not known */
	uv_connect_t connect_req;
	uv_shutdown_t shutdown_req;
};

int net_loop_init(struct net_loop *nl, uv_loop_t *loop);
void net_loop_close(struct net_loop *nl);
/* Client side: connects to host:port and handshakes; on_open when ready. */
int net_conn_connect(struct net_conn *c, struct net_loop *nl, SSL_CTX *ctx, const char *host,
		     int port, const struct net_conn_cbs *cbs, void *user);
/* Marks c for flushing at the end of this loop iteration. */
void net_conn_want_flush(struct net_conn *c);
/* Flushes pending output, sends close_notify, closes; on_close follows, then free(c). */
void net_conn_close(struct net_conn *c);
/* Flushes one connection now (used by the loop's check handler). */
void net_conn_flush(struct net_conn *c);
/* Starts reading on a connection adopted from another worker (net_conn_adopt). */
void net_conn_resume_reading(struct net_conn *c);
/* Stops or resumes reading for the layer above (e.g. while its records wait for the store). */
void net_conn_hold_reading(struct net_conn *c, bool hold);
/* Ciphertext not yet written to the socket, in bytes. */
size_t net_conn_output_pending(const struct net_conn *c);
/* Negotiated group name after the handshake. */
const char *net_conn_group(struct net_conn *c);
/* The address part of a socket address as 16 bytes (IPv4 as ::ffff:a.b.c.d). */
void net_addr_key(const struct sockaddr *sa, uint8_t key[16]);
/* Closes the connections whose handshake or close deadline has passed. */
void net_loop_sweep(struct net_loop *nl);
/* Closes at once every connection still in its handshake (and the lingering ones): the
 * loop is stopping. */
void net_loop_close_pending(struct net_loop *nl, bool lingering);
/* Closes at once, without close_notify (a connection that has not finished its handshake). */
void net_conn_abort(struct net_conn *c);

/* ---------- handing a connection to another loop ---------- */

/* A server connection between loops: its socket, its TLS state (the SSL object, or the
 * record layer with any ciphertext read but not yet decrypted) and its address. */
struct net_handoff;
/* Takes c's socket and TLS state out of its loop. c itself is released without on_close
 * (c->user is the caller's to carry over). NULL when that cannot be done: c is then closed the
 * ordinary way (on_close follows). Only with no output pending (net_conn_output_pending). */
struct net_handoff *net_conn_handoff(struct net_conn *c);
/* A new connection on nl from h (freed here, also on failure), not yet reading: attach the
 * protocol's state, then net_conn_resume_reading(). NULL on failure (socket closed). */
struct net_conn *net_conn_adopt(struct net_loop *nl, struct net_handoff *h, const struct net_conn_cbs *cbs,
				void *user);
/* Closes the socket and frees the TLS state of a handoff nobody adopted. */
void net_handoff_free(struct net_handoff *h);

/* Server side: a new TLS connection on nl for an accepted socket fd (taken, also on failure),
 * in its handshake; on_open follows when it is done. Connections still in their handshake
 * are capped per loop (nl->max_hs_per_addr from one source address) and over every loop
 * (nl->max_hs, counted in nl->hs_total): beyond a cap the oldest such connection is closed,
 * so that a flood of half-open connections cannot keep a real client out. NULL on failure. */
struct net_conn *net_conn_accept_fd(struct net_loop *nl, int fd, SSL_CTX *ctx, const struct net_conn_cbs *cbs,
				    void *user);

/* ---------- the server: worker threads, each running one loop for every protocol ---------- */

/* A protocol served by the workers (MQTT, HTTPS, enrolment, ...): the transport knows it only
 * by these hooks, each called on a worker's thread with that worker's index and loop. Every
 * hook but accept may be NULL. */
struct net_proto {
	const char *name;   /* for messages: "MQTT", "HTTPS" */
	void *ctx;
	int fd;             /* its bound socket (net_bind), taken by the server; -1: no listener */
	const char *host;   /* where fd is bound, for messages */
	void (*worker_start)(void *ctx, unsigned idx, struct net_loop *nl); /* before the thread runs */
	void (*accept)(void *ctx, unsigned idx, struct net_loop *nl, int fd); /* takes fd */
	void (*wake)(void *ctx, unsigned idx);          /* net_server_wake() named this worker */
	void (*before_flush)(void *ctx, unsigned idx);  /* each loop iteration, before output is flushed */
	void (*tick)(void *ctx, unsigned idx, uint64_t now_ms); /* every tick_ms */
	void (*stop)(void *ctx, unsigned idx);          /* stopping: say goodbye and close */
	bool (*idle)(void *ctx, unsigned idx);          /* stopping: nothing of it is left open */
	void (*end)(void *ctx, unsigned idx);           /* the loop has ended */
};

#define NET_MAX_PROTOS 4
#define NET_READ_BUDGET_DEFAULT (64u * 1024)
#define NET_WRITE_BACKLOG_DEFAULT (1u << 20)

struct net_server_config {
	unsigned threads;
	uint32_t tick_ms;
	uint32_t read_budget, write_backlog; /* see struct net_loop; 0 = the default */
	uint32_t handshake_timeout_ms;       /* limits.handshake_timeout_ms */
	uint32_t max_handshakes;             /* limits.max_handshakes (all workers); 0: no cap */
	uint32_t max_handshakes_per_address; /* limits.max_handshakes_per_address (split between workers) */
	uint32_t close_linger_ms;            /* limits.close_linger_ms */
	uint32_t fd_reserve;                 /* limits.fd_reserve */
	uint32_t stop_grace_ms;              /* stopping: the loops end this long after stop at most; 0: 3000 */
	struct net_proto protos[NET_MAX_PROTOS];
	unsigned n_protos;
};

/* Binds (without listening: connections are refused until the workers run) host:port, no
 * SO_REUSEPORT: only this process can listen there. Port 0: any free port (*out_port says
 * which). The socket, or -1 with *why ("address in use (another node ...)"). */
int net_bind(const char *host, int port, int *out_port, char *why, size_t why_len);
/* The port a bound socket has. */
int net_bound_port(int fd);

struct net_server;
/* Listens on the protocols' sockets (each shared by the workers, every worker accepting on
 * its own) and prepares the workers' loops; the fds are taken, also on failure. The threads
 * start with net_server_run. */
int net_server_create(struct net_server **out, const struct net_server_config *cfg, char *why, size_t why_len);
void net_server_run(struct net_server *srv);
/* Wakes worker idx (any thread): its protocols' wake hooks run on its loop. */
void net_server_wake(struct net_server *srv, unsigned idx);
/* Worker idx's loop (to adopt a connection handed over to it, on its thread). */
struct net_loop *net_server_loop(struct net_server *srv, unsigned idx);
/* Graceful stop: no new connections, the protocols' stop hooks, then the loops end once every
 * protocol is idle (or after stop_grace_ms). after_join (may be NULL) runs once the threads
 * have ended but before their loops close; then everything is freed. */
void net_server_stop(struct net_server *srv, void (*after_join)(void *arg), void *arg);
/* Raises the soft RLIMIT_NOFILE to the hard limit (once, at start); the limit now in force,
 * with a sentence saying what it is in msg. */
unsigned net_raise_fd_limit(char *msg, size_t len);
/* The network layer's counters, for /metrics. */
struct net_counters {
	uint64_t accept_paused;      /* accepting paused: descriptors exhausted or within the reserve */
	uint64_t accept_refused;     /* connections closed at accept: within limits.fd_reserve */
	uint64_t handshake_timeouts; /* closed: no TLS handshake within limits.handshake_timeout_ms */
	uint64_t handshake_evicted;  /* closed: the oldest handshake, over limits.max_handshakes(_per_address) */
	uint64_t close_lingered;     /* closed hard: the peer did not take our last bytes in limits.close_linger_ms */
	unsigned fd_limit;
};
void net_counters(struct net_counters *out);

#endif
