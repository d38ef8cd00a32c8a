/* net_conn.c — a TLS connection over a libuv TCP handle.
 *
 * The SSL object talks to one small BIO of our own (net_bio) instead of two memory BIOs:
 * reads are served straight from the loop's socket buffer, and ciphertext is written straight
 * into the block that becomes the next uv_write. An idle connection therefore holds no I/O
 * buffer at all (memory BIOs keep their high-water allocation, ~3.5 KiB per connection), and
 * each byte is copied once less in each direction. Ciphertext that could not be consumed in
 * the read callback (the connection is migrating or pausing) is kept in a spill buffer that
 * travels with the SSL object.
 *
 * Output is coalesced: writers append plaintext to c->out and mark the connection dirty;
 * once per loop iteration (uv_check) each dirty connection encrypts everything pending in
 * records of up to 16 KiB and hands the ciphertext to the kernel in one uv_write.
 *
 * Input is bounded two ways, so that no connection can monopolise its worker:
 *  - a read budget: after nl->read_budget bytes in one loop iteration a connection stops being
 *    read until the end of the iteration (check_cb resumes it). A publisher that floods
 *    without a window therefore gets its share of each iteration, and the subscribers on the
 *    same worker still have their acknowledgements read and their queues drained;
 *  - write backpressure: while more than nl->write_high bytes of our output to a connection wait
 *    for the kernel (the peer does not read), its input is not read either, until the
 *    backlog falls under half of that. A client cannot make us queue answers without bound.
 *
 * States and deadlines (net_loop_sweep enforces them, oldest first):
 *   HANDSHAKING --handshake done--> OPEN (HANDSHAKEN) --close--> CLOSING --> CLOSED (on_close, free)
 *   HANDSHAKING --nl->handshake_ms after accept, or evicted by the caps--> CLOSED at once
 *   CLOSING     --nl->linger_ms and the peer has not taken our last bytes--> CLOSED at once */
#include "net/net.h"
#include "net/net_internal.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "trust/audit.h"

#include <openssl/err.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>


size_t net_conn_output_pending(const struct net_conn *c)
{
	if (!c->ssl && !c->rl) /* its TLS state is migrating */
		return c->write_pending;
	const struct net_bio *nb = net_bio_of(c);
	return c->write_pending + (nb->wq ? nb->wq->len : 0);
}

static void check_cb(uv_check_t *h);
static void read_ciphertext(struct net_conn *c);
static void rl_alert(struct net_conn *c, uint8_t desc);
static void take_over(struct net_conn *c);

int net_loop_init(struct net_loop *nl, uv_loop_t *loop)
{
	nl->loop = loop;
	nl->dirty = NULL;
	nl->paused = NULL;
	nl->iteration = 0;
	nl->read_budget = NET_READ_BUDGET_DEFAULT;
	nl->write_high = NET_WRITE_BACKLOG_DEFAULT;
	nl->hs_head = nl->hs_tail = nl->lg_head = nl->lg_tail = NULL;
	nl->n_hs = 0;
	nl->handshake_ms = 10000;
	nl->linger_ms = 5000;
	nl->hs_total = NULL;
	nl->hs_timeouts = nl->hs_evicted = nl->lingered = 0;
	int rc = uv_check_init(loop, &nl->check);
	if (rc)
		return KZ_EIO;
	nl->check.data = nl;
	return uv_check_start(&nl->check, check_cb) ? KZ_EIO : KZ_OK;
}

void net_loop_close(struct net_loop *nl)
{
	uv_check_stop(&nl->check);
	uv_close((uv_handle_t *)&nl->check, NULL);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

#define READ_STOPPED (NET_CONN_READ_PAUSED | NET_CONN_READ_BLOCKED | NET_CONN_READ_HELD)
#define READ_DEAD (NET_CONN_CLOSING | NET_CONN_CLOSED | NET_CONN_MIGRATING)

/* ---------- deadlines: the handshake and linger lists ---------- */

static void tl_remove(struct net_conn *c)
{
	struct net_loop *nl = c->nl;
	if (c->t_list == NET_LIST_NONE || !nl)
		return;
	struct net_conn **head = c->t_list == NET_LIST_HANDSHAKE ? &nl->hs_head : &nl->lg_head;
	struct net_conn **tail = c->t_list == NET_LIST_HANDSHAKE ? &nl->hs_tail : &nl->lg_tail;
	if (c->t_prev)
		c->t_prev->t_next = c->t_next;
	else
		*head = c->t_next;
	if (c->t_next)
		c->t_next->t_prev = c->t_prev;
	else
		*tail = c->t_prev;
	if (c->t_list == NET_LIST_HANDSHAKE) {
		nl->n_hs--;
		if (nl->hs_total)
			atomic_fetch_sub(nl->hs_total, 1);
	}
	c->t_prev = c->t_next = NULL;
	c->t_list = NET_LIST_NONE;
}

/* Appends c with its deadline after ms; the lists stay ordered because every entry of one
 * list has the same timeout. */
static void tl_append(struct net_conn *c, uint8_t list, uint32_t ms)
{
	struct net_loop *nl = c->nl;
	tl_remove(c);
	if (!ms)
		return;
	struct net_conn **head = list == NET_LIST_HANDSHAKE ? &nl->hs_head : &nl->lg_head;
	struct net_conn **tail = list == NET_LIST_HANDSHAKE ? &nl->hs_tail : &nl->lg_tail;
	c->deadline_ms = uv_now(nl->loop) + ms;
	c->t_list = list;
	c->t_prev = *tail;
	c->t_next = NULL;
	if (*tail)
		(*tail)->t_next = c;
	else
		*head = c;
	*tail = c;
	if (list == NET_LIST_HANDSHAKE) {
		nl->n_hs++;
		if (nl->hs_total)
			atomic_fetch_add(nl->hs_total, 1);
	}
}

static void hard_close(struct net_conn *c);

void net_loop_sweep(struct net_loop *nl)
{
	uint64_t now = uv_now(nl->loop);
	while (nl->hs_head && nl->hs_head->deadline_ms <= now) {
		struct net_conn *c = nl->hs_head;
		kz_debug("%s: no TLS handshake within %u ms; closing", c->addr, nl->handshake_ms);
		nl->hs_timeouts++;
		hard_close(c);
	}
	while (nl->lg_head && nl->lg_head->deadline_ms <= now) {
		struct net_conn *c = nl->lg_head;
		kz_debug("%s: the peer did not take our last %zu bytes within %u ms; closing", c->addr,
			 net_conn_output_pending(c), nl->linger_ms);
		nl->lingered++;
		uv_os_fd_t fd; /* a reset, not an orphaned socket still holding our unread bytes */
		if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
			(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){ 1, 0 }, sizeof(struct linger));
		hard_close(c);
	}
}

void net_loop_close_pending(struct net_loop *nl, bool lingering)
{
	while (nl->hs_head)
		hard_close(nl->hs_head);
	while (lingering && nl->lg_head)
		hard_close(nl->lg_head);
}

static bool same_src(const struct net_conn *c, const uint8_t src[16])
{
	return memcmp(c->src, src, 16) == 0;
}

static struct net_conn *oldest_handshake(struct net_loop *nl, const uint8_t src[16])
{
	for (struct net_conn *c = nl->hs_head; c; c = c->t_next)
		if (!src || same_src(c, src))
			return c;
	return NULL;
}

static uint32_t handshakes_from(const struct net_loop *nl, const uint8_t src[16])
{
	uint32_t n = 0;
	for (const struct net_conn *c = nl->hs_head; c; c = c->t_next)
		n += same_src(c, src);
	return n;
}

void net_conn_abort(struct net_conn *c)
{
	hard_close(c);
}

static void read_hold(struct net_conn *c, uint32_t why)
{
	if (!(c->flags & READ_STOPPED))
		uv_read_stop((uv_stream_t *)&c->tcp);
	c->flags |= why;
}

static void read_release(struct net_conn *c, uint32_t why)
{
	if (!(c->flags & why))
		return;
	c->flags &= ~why;
	if (c->write_pending > c->nl->write_high) /* the backlog grew while reading was stopped */
		c->flags |= NET_CONN_READ_BLOCKED;
	if (!(c->flags & (READ_STOPPED | READ_DEAD)) && !uv_is_closing((uv_handle_t *)&c->tcp) &&
	    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb))
		net_conn_close(c);
}

void net_conn_hold_reading(struct net_conn *c, bool hold)
{
	if (hold)
		read_hold(c, NET_CONN_READ_HELD);
	else
		read_release(c, NET_CONN_READ_HELD);
}

/* Runs once per loop iteration, after all I/O callbacks: encrypts and writes what each dirty
 * connection has pending, then gives connections that used their read budget their turn
 * again. Close callbacks run after this phase, so no connection on the lists is freed yet. */
static void check_cb(uv_check_t *h)
{
	struct net_loop *nl = h->data;
	if (nl->before_flush)
		nl->before_flush(nl);
	while (nl->dirty) {
		struct net_conn *c = nl->dirty;
		nl->dirty = c->dirty_next;
		c->dirty_next = NULL;
		c->flags &= ~NET_CONN_DIRTY;
		net_conn_flush(c);
	}
	nl->iteration++;
	while (nl->paused) {
		struct net_conn *c = nl->paused;
		nl->paused = c->paused_next;
		c->paused_next = NULL;
		read_release(c, NET_CONN_READ_PAUSED);
	}
}

void net_conn_want_flush(struct net_conn *c)
{
	if (c->flags & (NET_CONN_DIRTY | NET_CONN_CLOSED))
		return;
	c->flags |= NET_CONN_DIRTY;
	c->dirty_next = c->nl->dirty;
	c->nl->dirty = c;
}

static void close_cb(uv_handle_t *h)
{
	struct net_conn *c = h->data;
	tl_remove(c);
	if (c->cbs && c->cbs->on_close)
		c->cbs->on_close(c);
	SSL_free(c->ssl);
	net_rl_free(c->rl);
	kz_buf_cleanup(&c->out);
	free(c);
}

static void hard_close(struct net_conn *c)
{
	tl_remove(c);
	c->flags |= NET_CONN_CLOSED | NET_CONN_CLOSING;
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	uv_read_stop((uv_stream_t *)&c->tcp);
	uv_close((uv_handle_t *)&c->tcp, close_cb);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
	struct net_conn *c = req->data;
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, close_cb);
}

static void write_cb(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	struct net_conn *c = w->c;
	c->write_pending -= w->len;
	free(w);
	if (status < 0) {
		if (!(c->flags & NET_CONN_CLOSED))
			kz_debug("%s: write failed: %s", c->addr, uv_strerror(status));
		hard_close(c);
		return;
	}
	if (c->write_pending < c->nl->write_high / 2)
		read_release(c, NET_CONN_READ_BLOCKED);
	if (c->write_pending == 0 && !(c->flags & NET_CONN_CLOSING) && c->cbs->on_writable &&
	    (c->flags & NET_CONN_HANDSHAKEN))
		c->cbs->on_writable(c);
}

/* Hands whatever ciphertext the SSL object produced to the kernel in one uv_write. */
static int send_wbio(struct net_conn *c)
{
	struct net_bio *nb = net_bio_of(c);
	struct wreq *w = nb->wq;
	if (!w || w->len == 0)
		return KZ_OK;
	nb->wq = NULL;
	w->c = c;
	uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
	c->write_pending += w->len;
	int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
	if (rc) {
		c->write_pending -= w->len;
		free(w);
		return KZ_EIO;
	}
	return KZ_OK;
}

void net_conn_flush(struct net_conn *c)
{
	if (c->flags & (NET_CONN_CLOSED | NET_CONN_MIGRATING))
		return;
	if (c->flags & NET_CONN_HANDSHAKEN) {
		/* Room for all records at once: 5-byte header, content type and 16-byte tag each. */
		if (c->out.len && net_bio_reserve(net_bio_of(c), c->out.len + 22 * (c->out.len / TLS_CHUNK + 1))) {
			hard_close(c);
			return;
		}
		while (c->out.len > 0) {
			size_t n = c->out.len < TLS_CHUNK ? c->out.len : TLS_CHUNK;
			if (c->rl) { /* our record layer: straight into the write block */
				struct wreq *w = net_bio_of(c)->wq;
				size_t k = net_rl_seal(c->rl, 23, kz_buf_head(&c->out), n, (uint8_t *)w->data + w->len);
				if (!k) {
					hard_close(c);
					return;
				}
				w->len += k;
				kz_buf_consume(&c->out, n);
				continue;
			}
			int w = SSL_write(c->ssl, kz_buf_head(&c->out), (int)n);
			if (w <= 0) {
				ERR_clear_error();
				hard_close(c);
				return;
			}
			kz_buf_consume(&c->out, (size_t)w);
		}
		kz_buf_shrink(&c->out, 0); /* idle connections hold no output buffer */
	}
	if (c->flags & NET_CONN_CLOSING) {
		if (c->rl)
			rl_alert(c, 0); /* close_notify */
		else if (c->flags & NET_CONN_HANDSHAKEN)
			(void)SSL_shutdown(c->ssl); /* close_notify into wbio */
		ERR_clear_error();
		(void)send_wbio(c);
		c->shutdown_req.data = c;
		c->flags |= NET_CONN_CLOSED;
		uv_read_stop((uv_stream_t *)&c->tcp);
		if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, shutdown_cb))
			uv_close((uv_handle_t *)&c->tcp, close_cb);
		return;
	}
	if (send_wbio(c))
		hard_close(c);
}

/* CLOSING: the last output, close_notify and FIN go out at the next flush; a peer that
 * does not read them has linger_ms before the socket is closed anyway. */
static void begin_close(struct net_conn *c)
{
	c->flags |= NET_CONN_CLOSING;
	tl_append(c, NET_LIST_LINGER, c->nl->linger_ms);
	net_conn_want_flush(c);
}

void net_conn_close(struct net_conn *c)
{
	if (c->flags & (NET_CONN_CLOSING | NET_CONN_CLOSED))
		return;
	uv_read_stop((uv_stream_t *)&c->tcp);
	begin_close(c);
}

const char *net_conn_group(struct net_conn *c)
{
	if (!(c->flags & NET_CONN_HANDSHAKEN))
		return "-";
	if (c->rl)
		return net_rl_group(c->rl);
	int g = SSL_get_negotiated_group(c->ssl);
	const char *name = SSL_group_to_name(c->ssl, g);
	return name ? name : "?";
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct net_conn *c = h->data;
	buf->base = (char *)c->nl->rbuf;
	buf->len = sizeof c->nl->rbuf;
}

/* A client's TLS failure in words an operator can act on (the node's log has its side). */
static void client_why(struct net_conn *c, const char *err, long vr)
{
	const char *w = err;
	if (vr != X509_V_OK)
		snprintf(c->why, sizeof c->why, "the node's certificate does not verify against our CA file: %s",
			 X509_verify_cert_error_string(vr));
	else if (strstr(err, "wrong version number") || strstr(err, "packet length too long") ||
		 strstr(err, "record layer failure") || strstr(err, "http request"))
		snprintf(c->why, sizeof c->why, "%s does not speak TLS (an HTTP or plaintext port?)", c->addr);
	else if (strstr(err, "unsupported certificate"))
		snprintf(c->why, sizeof c->why, "the node refused our certificate: its purpose (extended key usage) "
			 "does not allow TLS client authentication");
	else if (strstr(err, "certificate revoked"))
		snprintf(c->why, sizeof c->why, "the node refused our certificate: it is revoked");
	else if (strstr(err, "certificate expired"))
		snprintf(c->why, sizeof c->why, "the node refused our certificate: it has expired");
	else if (strstr(err, "certificate required"))
		snprintf(c->why, sizeof c->why, "the node requires a client certificate");
	else if (strstr(err, "bad certificate") || strstr(err, "unknown ca") || strstr(err, "access denied"))
		snprintf(c->why, sizeof c->why, "the node refused our certificate (%s; the node's log says why)", err);
	else if (strstr(err, "protocol version"))
		snprintf(c->why, sizeof c->why, "no TLS version in common (kizuna speaks TLS 1.3 only)");
	else
		snprintf(c->why, sizeof c->why, "TLS failed: %s", w[0] ? w : "the connection was closed");
}

const char *const net_tls_fail_names[NET_TLS_FAIL_N] = { "identity", "no_certificate", "unknown_ca", "expired",
							  "revoked", "crl", "protocol_version", "no_shared_group",
							  "other" };
static atomic_uint_fast64_t tls_failures[NET_TLS_FAIL_N];

uint64_t net_tls_failures(enum net_tls_fail reason)
{
	return reason < NET_TLS_FAIL_N ? atomic_load(&tls_failures[reason]) : 0;
}

static enum net_tls_fail fail_reason(const char *err, long vr, const char *refused)
{
	if (vr == X509_V_ERR_CERT_REVOKED)
		return NET_TLS_FAIL_REVOKED;
	if (vr == X509_V_ERR_UNABLE_TO_GET_CRL)
		return NET_TLS_FAIL_CRL;
	if (refused)
		return NET_TLS_FAIL_IDENTITY;
	if (vr == X509_V_ERR_CERT_HAS_EXPIRED || vr == X509_V_ERR_CERT_NOT_YET_VALID)
		return NET_TLS_FAIL_EXPIRED;
	if (vr == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY || vr == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE ||
	    vr == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT || vr == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN)
		return NET_TLS_FAIL_UNKNOWN_CA;
	if (strstr(err, "peer did not return a certificate") || strstr(err, "certificate required"))
		return NET_TLS_FAIL_NO_CERT;
	if (strstr(err, "unsupported protocol") || strstr(err, "version"))
		return NET_TLS_FAIL_VERSION;
	if (strstr(err, "key share") || strstr(err, "shared group"))
		return NET_TLS_FAIL_GROUP;
	return NET_TLS_FAIL_OTHER;
}

static void handshake_step(struct net_conn *c)
{
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->flags |= NET_CONN_HANDSHAKEN;
		tl_remove(c); /* authenticated: the protocol layer's deadlines take over */
		(void)send_wbio(c);
		if (c->cbs->on_open)
			c->cbs->on_open(c);
		take_over(c);
		return;
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		(void)send_wbio(c);
		return;
	}
	char err[256];
	net_tls_errors(err, sizeof err);
	long vr = SSL_get_verify_result(c->ssl);
	if (c->flags & NET_CONN_IS_CLIENT) {
		client_why(c, err, vr);
		kz_debug("%s: TLS handshake failed: %s", c->addr, err);
		(void)send_wbio(c);
		begin_close(c);
		return;
	}
	const char *refused = net_tls_refusal(c->ssl);
	atomic_fetch_add_explicit(&tls_failures[fail_reason(err, vr, refused)], 1, memory_order_relaxed);
	const char *cause = refused ? refused : vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "";
	if (!cause[0] && strstr(err, "no suitable key share") && net_tls_requires_pq(c->ssl))
		cause = "the client offered no X25519MLKEM768 key share and tls.require_pq is on (classical key exchange refused)";
	else if (!cause[0] && strstr(err, "no suitable key share"))
		cause = "no key-exchange group in common (tls.groups)";
	kz_warn("%s: TLS handshake failed: %s%s%s", c->addr, err, vr != X509_V_OK ? "; certificate: " : cause[0] ? "; " : "",
		cause);
	kz_audit(&(struct kz_audit_entry){ .action = "tls", .resource = c->addr, .allow = false,
					  .reason = cause[0] ? cause : "TLS handshake failed" });
	(void)send_wbio(c); /* the alert */
	begin_close(c);
}

/* ---------- after the handshake: our record layer (net_rl.c) ----------
 *
 * A server connection's SSL object is freed once the handshake is done and the protocol
 * layer has read the peer's identity (on_open): what remains is two AEAD contexts. Not for
 * clients, enrolment connections, or when OpenSSL holds anything unread. */
static void take_over(struct net_conn *c)
{
	if ((c->flags & (NET_CONN_IS_CLIENT | NET_CONN_CLOSING | NET_CONN_CLOSED)) || !c->ssl ||
	    net_tls_is_enroll(c->ssl) || SSL_has_pending(c->ssl) || net_bio_of(c)->wq)
		return;
	uint8_t cs[48], ss[48];
	size_t len;
	if (net_tls_take_secrets(c->ssl, cs, ss, &len))
		return;
	struct net_rl *rl = net_rl_new(c->ssl, cs, ss, len);
	OPENSSL_cleanse(cs, sizeof cs);
	OPENSSL_cleanse(ss, sizeof ss);
	if (!rl)
		return;
	BIO *bio = SSL_get_rbio(c->ssl);
	BIO_up_ref(bio);
	net_rl_set_bio(rl, bio);
	SSL_free(c->ssl);
	c->ssl = NULL;
	c->rl = rl;
}

/* An alert record (level fatal unless close_notify) into the write block. */
static void rl_alert(struct net_conn *c, uint8_t desc)
{
	uint8_t a[2] = { desc == 0 ? 1 : 2, desc };
	struct net_bio *nb = net_bio_of(c);
	if (net_bio_reserve(nb, 2 + 22))
		return;
	nb->wq->len += net_rl_seal(c->rl, 21, a, 2, (uint8_t *)nb->wq->data + nb->wq->len);
}

/* A post-handshake message (RFC 8446 §4.6): only KeyUpdate is legal from a client here. */
static int rl_handshake_msg(struct net_conn *c, const uint8_t *p, size_t n)
{
	if (n != 5 || p[0] != 24 || p[1] != 0 || p[2] != 0 || p[3] != 1 || p[4] > 1)
		return -1;
	if (net_rl_key_update(c->rl, false))
		return -1;
	if (p[4] == 1) { /* update_requested: answer with ours (not requested), then switch */
		static const uint8_t ku[5] = { 24, 0, 0, 1, 0 };
		struct net_bio *nb = net_bio_of(c);
		if (net_bio_reserve(nb, sizeof ku + 22))
			return -1;
		nb->wq->len += net_rl_seal(c->rl, 22, ku, sizeof ku, (uint8_t *)nb->wq->data + nb->wq->len);
		if (net_rl_key_update(c->rl, true))
			return -1;
	}
	return 0;
}

/* Whole records from the read view (or the spill, when older bytes wait there); a partial
 * record stays for the next read. */
static void rl_read(struct net_conn *c)
{
	struct net_bio *nb = net_bio_of(c);
	for (;;) {
		if (c->flags & (NET_CONN_CLOSING | NET_CONN_MIGRATING))
			return;
		bool spill = nb->spill.len > 0;
		const uint8_t *p = spill ? kz_buf_head(&nb->spill) : nb->view;
		size_t n = spill ? nb->spill.len : nb->view_len;
		if (n < 5)
			return;
		size_t rlen = ((size_t)p[3] << 8) | p[4];
		if (p[0] != 0x17 || p[1] != 0x03 || p[2] != 0x03 || rlen > TLS_CHUNK + 256 || rlen < 17) {
			kz_info("%s: TLS read error: malformed record (type %u, length %zu)", c->addr, p[0], rlen);
			rl_alert(c, p[0] != 0x17 ? 10 : 22); /* unexpected_message / record_overflow */
			(void)send_wbio(c);
			hard_close(c);
			return;
		}
		if (n < 5 + rlen)
			return;
		size_t len;
		uint8_t type;
		if (net_rl_open(c->rl, p, 5 + rlen, c->nl->pbuf, &len, &type)) {
			kz_info("%s: TLS read error: a record does not authenticate (bad_record_mac)", c->addr);
			rl_alert(c, 20);
			(void)send_wbio(c);
			hard_close(c);
			return;
		}
		if (spill)
			kz_buf_consume(&nb->spill, 5 + rlen);
		else {
			nb->view += 5 + rlen;
			nb->view_len -= 5 + rlen;
		}
		if (spill && nb->spill.len == 0)
			kz_buf_shrink(&nb->spill, 0);
		if (type == 23) {
			if (len)
				c->cbs->on_data(c, c->nl->pbuf, len);
		} else if (type == 21) { /* alert: close_notify closes cleanly, anything else at once */
			if (len == 2 && c->nl->pbuf[1] == 0)
				net_conn_close(c);
			else {
				kz_info("%s: TLS alert %u from the client", c->addr, len == 2 ? c->nl->pbuf[1] : 0);
				hard_close(c);
			}
			return;
		} else if (type == 22) {
			if (rl_handshake_msg(c, c->nl->pbuf, len)) {
				kz_info("%s: TLS read error: unexpected post-handshake message", c->addr);
				rl_alert(c, 10);
				(void)send_wbio(c);
				hard_close(c);
				return;
			}
		} else {
			kz_info("%s: TLS read error: record of inner type %u", c->addr, type);
			rl_alert(c, 10);
			(void)send_wbio(c);
			hard_close(c);
			return;
		}
	}
}

static void read_plain(struct net_conn *c)
{
	if (c->rl) {
		rl_read(c);
		return;
	}
	for (;;) {
		if (c->flags & (NET_CONN_CLOSING | NET_CONN_MIGRATING))
			return;
		int n = SSL_read(c->ssl, c->nl->pbuf, sizeof c->nl->pbuf);
		if (n > 0) {
			c->cbs->on_data(c, c->nl->pbuf, (size_t)n);
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ)
			return;
		if (e == SSL_ERROR_ZERO_RETURN) {
			net_conn_close(c);
			return;
		}
		char err[256];
		net_tls_errors(err, sizeof err);
		if (c->flags & NET_CONN_IS_CLIENT) /* TLS 1.3: the node refuses our certificate after our Finished */
			client_why(c, err, X509_V_OK);
		kz_info("%s: TLS read error: %s", c->addr, err);
		hard_close(c);
		return;
	}
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct net_conn *c = s->data;
	if (nread < 0) {
		if (nread != UV_EOF)
			kz_debug("%s: read error: %s", c->addr, uv_strerror((int)nread));
		hard_close(c);
		return;
	}
	if (nread == 0)
		return;
	struct net_bio *nb = net_bio_of(c);
	if (nb->spill.len) { /* older ciphertext first */
		if (kz_buf_append(&nb->spill, buf->base, (size_t)nread)) {
			hard_close(c);
			return;
		}
	} else {
		nb->view = (const uint8_t *)buf->base;
		nb->view_len = (size_t)nread;
	}
	read_ciphertext(c);
	if (!c->ssl && !c->rl)
		return; /* detached for migration: nb now belongs to another worker */
	/* What the SSL object did not take (closing) must not point into the loop buffer. */
	if (nb->view_len && !(c->flags & NET_CONN_CLOSED) &&
	    kz_buf_append(&nb->spill, nb->view, nb->view_len))
		hard_close(c);
	nb->view = NULL;
	nb->view_len = 0;
	if (c->flags & READ_DEAD)
		return;
	if (c->write_pending > c->nl->write_high)
		read_hold(c, NET_CONN_READ_BLOCKED);
	if (c->flags & READ_STOPPED)
		return;
	if (c->read_iteration != c->nl->iteration) {
		c->read_iteration = c->nl->iteration;
		c->read_bytes = 0;
	}
	c->read_bytes += (size_t)nread;
	if (c->read_bytes >= c->nl->read_budget) {
		read_hold(c, NET_CONN_READ_PAUSED);
		c->paused_next = c->nl->paused;
		c->nl->paused = c;
	}
}

struct net_handoff {
	int fd;
	SSL *ssl;            /* or, after the handshake, */
	struct net_rl *rl;   /* the record layer */
	uint8_t src[16];
	char addr[64];
};

void net_handoff_free(struct net_handoff *h)
{
	if (!h)
		return;
	close(h->fd);
	SSL_free(h->ssl);
	net_rl_free(h->rl);
	free(h);
}

/* The TLS state leaves c with any ciphertext read but not yet decrypted (kept in the spill
 * buffer that travels with the SSL object); the socket leaves as a duplicate descriptor, and
 * closing the original takes it out of this loop's epoll set. */
struct net_handoff *net_conn_handoff(struct net_conn *c)
{
	struct net_handoff *h = calloc(1, sizeof *h);
	uv_os_fd_t fd;
	if (h)
		h->fd = -1;
	if (!h || (!c->ssl && !c->rl) || uv_fileno((uv_handle_t *)&c->tcp, &fd) || (h->fd = dup(fd)) < 0)
		goto fail;
	struct net_bio *nb = net_bio_of(c);
	if (nb->view_len && kz_buf_append(&nb->spill, nb->view, nb->view_len))
		goto fail;
	nb->view = NULL;
	nb->view_len = 0;
	tl_remove(c);
	h->ssl = c->ssl;
	h->rl = c->rl;
	c->ssl = NULL;
	c->rl = NULL;
	memcpy(h->src, c->src, sizeof h->src);
	snprintf(h->addr, sizeof h->addr, "%s", c->addr);
	kz_buf_cleanup(&c->out);
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->flags |= NET_CONN_CLOSED | NET_CONN_CLOSING;
	c->cbs = NULL; /* released without on_close: its user state moves with the caller */
	uv_close((uv_handle_t *)&c->tcp, close_cb);
	return h;
fail:
	if (h && h->fd >= 0)
		close(h->fd);
	free(h);
	c->flags &= ~NET_CONN_MIGRATING;
	net_conn_close(c);
	return NULL;
}

struct net_conn *net_conn_adopt(struct net_loop *nl, struct net_handoff *h, const struct net_conn_cbs *cbs,
				void *user)
{
	struct net_conn *c = calloc(1, sizeof *c);
	if (!c || uv_tcp_init(nl->loop, &c->tcp)) {
		free(c);
		net_handoff_free(h);
		return NULL;
	}
	int e = uv_tcp_open(&c->tcp, h->fd);
	if (e) {
		kz_warn("%s: adopting a connection on another worker: %s", h->addr, uv_strerror(e));
		c->tcp.data = NULL;
		uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)(void (*)(void))free);
		net_handoff_free(h);
		return NULL;
	}
	c->tcp.data = c;
	c->nl = nl;
	c->cbs = cbs;
	c->user = user;
	c->ssl = h->ssl;
	c->rl = h->rl;
	c->flags = NET_CONN_HANDSHAKEN;
	memcpy(c->src, h->src, sizeof c->src);
	snprintf(c->addr, sizeof c->addr, "%s", h->addr);
	kz_buf_init(&c->out, 0);
	free(h);
	return c;
}

static void read_ciphertext(struct net_conn *c)
{
	if (!(c->flags & NET_CONN_HANDSHAKEN)) {
		handshake_step(c);
		if (!(c->flags & NET_CONN_HANDSHAKEN))
			return;
	}
	read_plain(c);
	if (!(c->flags & NET_CONN_CLOSED) && net_bio_of(c)->wq)
		net_conn_want_flush(c); /* e.g. key update responses */
}

static int conn_setup(struct net_conn *c, struct net_loop *nl, SSL_CTX *ctx,
		      const struct net_conn_cbs *cbs, void *user)
{
	c->nl = nl;
	c->cbs = cbs;
	c->user = user;
	c->tcp.data = c;
	kz_buf_init(&c->out, 0);
	BIO *bio = net_bio_new();
	c->ssl = bio ? SSL_new(ctx) : NULL;
	if (!c->ssl) {
		BIO_free(bio);
		return KZ_ENOMEM;
	}
	SSL_set_bio(c->ssl, bio, bio); /* one BIO for both directions; the SSL owns it */
	uv_tcp_nodelay(&c->tcp, 1);
	return KZ_OK;
}

void net_addr_key(const struct sockaddr *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	} else if (sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	}
}

static int conn_accept(struct net_conn *c, struct net_loop *nl, SSL_CTX *ctx,
		       const struct net_conn_cbs *cbs, void *user)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	c->addr[0] = 0;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
		char ip[48];
		net_addr_key((struct sockaddr *)&ss, c->src);
		if (ss.ss_family == AF_INET6) {
			uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
			snprintf(c->addr, sizeof c->addr, "[%s]:%d", ip,
				 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
		} else {
			uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
			snprintf(c->addr, sizeof c->addr, "%s:%d", ip,
				 ntohs(((struct sockaddr_in *)&ss)->sin_port));
		}
	}
	int rc = conn_setup(c, nl, ctx, cbs, user);
	if (rc)
		return rc;
	tl_append(c, NET_LIST_HANDSHAKE, nl->handshake_ms);
	SSL_set_accept_state(c->ssl);
	return uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) ? KZ_EIO : KZ_OK;
}

struct net_conn *net_conn_accept_fd(struct net_loop *nl, int fd, SSL_CTX *ctx, const struct net_conn_cbs *cbs,
				    void *user)
{
	struct net_conn *c = calloc(1, sizeof *c);
	if (!c) {
		close(fd);
		return NULL;
	}
	if (uv_tcp_init(nl->loop, &c->tcp)) {
		free(c);
		close(fd);
		return NULL;
	}
	c->tcp.data = c;
	if (uv_tcp_open(&c->tcp, fd)) {
		close(fd);
		uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)(void (*)(void))free);
		return NULL;
	}
	if (conn_accept(c, nl, ctx, cbs, user)) {
		net_conn_close(c);
		return NULL;
	}
	if (nl->max_hs_per_addr && handshakes_from(nl, c->src) > nl->max_hs_per_addr) {
		struct net_conn *old = oldest_handshake(nl, c->src);
		kz_debug("%s: over limits.max_handshakes_per_address; closing the oldest handshake from it", old->addr);
		nl->hs_evicted++;
		hard_close(old);
	}
	while (nl->max_hs && nl->hs_total && atomic_load(nl->hs_total) > nl->max_hs) {
		struct net_conn *old = oldest_handshake(nl, NULL);
		if (!old || old == c)
			break; /* the older ones are another loop's: it evicts at its next accept */
		kz_debug("%s: over limits.max_handshakes; closing the oldest handshake", old->addr);
		nl->hs_evicted++;
		hard_close(old);
	}
	return c->flags & NET_CONN_CLOSED ? NULL : c;
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct net_conn *c = req->data;
	if (status < 0) {
		if (status == UV_ECONNREFUSED)
			snprintf(c->why, sizeof c->why, "connection refused: nothing listens on %s", c->addr);
		else
			snprintf(c->why, sizeof c->why, "cannot connect to %s: %s", c->addr, uv_strerror(status));
		kz_debug("connect to %s failed: %s", c->addr, uv_strerror(status));
		hard_close(c);
		return;
	}
	if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb)) {
		hard_close(c);
		return;
	}
	handshake_step(c);
}

int net_conn_connect(struct net_conn *c, struct net_loop *nl, SSL_CTX *ctx, const char *host,
		     int port, const struct net_conn_cbs *cbs, void *user)
{
	struct sockaddr_storage sa;
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa)) {
		if (strcmp(host, "localhost") == 0)
			uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)&sa);
		else
			return KZ_EINVAL;
	}
	snprintf(c->addr, sizeof c->addr, "%s:%d", host, port);
	if (uv_tcp_init(nl->loop, &c->tcp))
		return KZ_EIO;
	int rc = conn_setup(c, nl, ctx, cbs, user);
	if (rc)
		return rc;
	c->flags |= NET_CONN_IS_CLIENT;
	SSL_set_connect_state(c->ssl);
	SSL_set_tlsext_host_name(c->ssl, (char *)(strcmp(host, "127.0.0.1") == 0 ? "localhost" : host));
	if (strcmp(host, "127.0.0.1") && strcmp(host, "::1"))
		SSL_set1_host(c->ssl, host);
	else
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host);
	c->connect_req.data = c;
	return uv_tcp_connect(&c->connect_req, &c->tcp, (struct sockaddr *)&sa, connect_cb) ? KZ_EIO : KZ_OK;
}

/* For a connection adopted from another worker: start reading and process any decrypted
 * bytes still inside the TLS object. */
void net_conn_resume_reading(struct net_conn *c)
{
	/* not when the protocol held reading while it took the connection over (a CONNECT that
	 * waits): its release starts it, and a second uv_read_start fails (UV_EALREADY) */
	if (!(c->flags & READ_STOPPED) && uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb)) {
		hard_close(c);
		return;
	}
	read_plain(c);
}
