/* net_conn.c — a TLS connection over a libuv TCP handle, with memory BIOs.
 *
 * Output is coalesced: writers append plaintext to c->out and mark the connection dirty;
 * once per loop iteration (uv_check) each dirty connection encrypts everything pending in
 * records of up to 16 KiB and hands the ciphertext to the kernel in one uv_write.
 *
 * States: HANDSHAKING -> OPEN (HANDSHAKEN) -> CLOSING -> CLOSED (on_close, free). */
#include "net/net.h"
#include "base/kz_err.h"
#include "base/kz_log.h"

#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#define TLS_CHUNK 16384
#define WRITE_HIGH (1u << 20)

struct wreq {
	uv_write_t req;
	struct net_conn *c;
	size_t len;
	char data[];
};

static void check_cb(uv_check_t *h);

int net_loop_init(struct net_loop *nl, uv_loop_t *loop)
{
	nl->loop = loop;
	nl->dirty = NULL;
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
	if (c->cbs && c->cbs->on_close)
		c->cbs->on_close(c);
	SSL_free(c->ssl);
	kz_buf_cleanup(&c->out);
	free(c);
}

static void hard_close(struct net_conn *c)
{
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
	if (c->write_pending == 0 && !(c->flags & NET_CONN_CLOSING) && c->cbs->on_writable &&
	    (c->flags & NET_CONN_HANDSHAKEN))
		c->cbs->on_writable(c);
}

/* Moves whatever ciphertext the SSL object produced into one uv_write. */
static int send_wbio(struct net_conn *c)
{
	size_t pending = BIO_ctrl_pending(c->wbio);
	if (pending == 0)
		return KZ_OK;
	struct wreq *w = malloc(sizeof *w + pending);
	if (!w)
		return KZ_ENOMEM;
	int n = BIO_read(c->wbio, w->data, (int)pending);
	if (n <= 0) {
		free(w);
		return KZ_OK;
	}
	w->c = c;
	w->len = (size_t)n;
	uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
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
		while (c->out.len > 0) {
			size_t n = c->out.len < TLS_CHUNK ? c->out.len : TLS_CHUNK;
			int w = SSL_write(c->ssl, kz_buf_head(&c->out), (int)n);
			if (w <= 0) {
				ERR_clear_error();
				hard_close(c);
				return;
			}
			kz_buf_consume(&c->out, (size_t)w);
		}
		kz_buf_shrink(&c->out, 16384);
	}
	if (c->flags & NET_CONN_CLOSING) {
		if (c->flags & NET_CONN_HANDSHAKEN)
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

void net_conn_close(struct net_conn *c)
{
	if (c->flags & (NET_CONN_CLOSING | NET_CONN_CLOSED))
		return;
	c->flags |= NET_CONN_CLOSING;
	uv_read_stop((uv_stream_t *)&c->tcp);
	net_conn_want_flush(c);
}

const char *net_conn_group(struct net_conn *c)
{
	if (!(c->flags & NET_CONN_HANDSHAKEN))
		return "-";
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

static void handshake_step(struct net_conn *c)
{
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->flags |= NET_CONN_HANDSHAKEN;
		(void)send_wbio(c);
		if (c->cbs->on_open)
			c->cbs->on_open(c);
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
	kz_warn("%s: TLS handshake failed: %s%s%s", c->addr, err,
		vr != X509_V_OK ? "; certificate: " : "",
		vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
	(void)send_wbio(c); /* the alert */
	c->flags |= NET_CONN_CLOSING;
	net_conn_want_flush(c);
	c->flags |= NET_CONN_CLOSING;
}

static void read_plain(struct net_conn *c)
{
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
	if (BIO_write(c->rbio, buf->base, (int)nread) != nread) {
		hard_close(c);
		return;
	}
	if (!(c->flags & NET_CONN_HANDSHAKEN)) {
		handshake_step(c);
		if (!(c->flags & NET_CONN_HANDSHAKEN))
			return;
	}
	read_plain(c);
	if (BIO_ctrl_pending(c->wbio) && !(c->flags & NET_CONN_CLOSED))
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
	c->ssl = SSL_new(ctx);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	if (!c->ssl || !c->rbio || !c->wbio) {
		BIO_free(c->rbio);
		BIO_free(c->wbio);
		return KZ_ENOMEM;
	}
	BIO_set_mem_eof_return(c->rbio, -1);
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	uv_tcp_nodelay(&c->tcp, 1);
	return KZ_OK;
}

int net_conn_accept(struct net_conn *c, struct net_loop *nl, SSL_CTX *ctx,
		    const struct net_conn_cbs *cbs, void *user)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	c->addr[0] = 0;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
		char ip[48];
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
	SSL_set_accept_state(c->ssl);
	return uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) ? KZ_EIO : KZ_OK;
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct net_conn *c = req->data;
	if (status < 0) {
		kz_error("connect to %s failed: %s", c->addr, uv_strerror(status));
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
	if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb)) {
		hard_close(c);
		return;
	}
	read_plain(c);
}
