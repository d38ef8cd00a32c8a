/* cli_https.c — the command line's blocking HTTPS/1.1 client (see cli_https.h). */
#include "cli/cli_https.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdbool.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

int cli_url_parse(const char *url, struct cli_url *u)
{
	memset(u, 0, sizeof *u);
	if (strncmp(url, "https://", 8) != 0)
		return -1;
	const char *h = url + 8, *slash = strchr(h, '/');
	size_t hl = slash ? (size_t)(slash - h) : strlen(h);
	char hp[300];
	if (hl == 0 || hl >= sizeof hp)
		return -1;
	memcpy(hp, h, hl);
	hp[hl] = 0;
	u->port = 443;
	char *colon = hp[0] == '[' ? strstr(hp, "]:") : strrchr(hp, ':');
	if (colon) {
		char *pp = colon + (hp[0] == '[' ? 2 : 1);
		char *e;
		long p = strtol(pp, &e, 10);
		if (*e || p < 1 || p > 65535)
			return -1;
		u->port = (int)p;
		*(hp[0] == '[' ? colon + 1 : colon) = 0;
	}
	if (hp[0] == '[') {
		size_t l = strlen(hp);
		if (hp[l - 1] != ']')
			return -1;
		hp[l - 1] = 0;
		memmove(hp, hp + 1, l - 1);
	}
	snprintf(u->host, sizeof u->host, "%s", hp);
	snprintf(u->path, sizeof u->path, "%s", slash ? slash : "/");
	return 0;
}

void cli_https_close(struct cli_https *c)
{
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0 && c->fd != 0)
		close(c->fd);
	c->fd = -1;
}

static int connect_to(struct cli_https *c, const struct cli_url *u, char *why, size_t why_len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *a;
	char port[16];
	snprintf(port, sizeof port, "%d", u->port);
	int rc = getaddrinfo(u->host, port, &hints, &res);
	if (rc) {
		snprintf(why, why_len, "%s: %s", u->host, gai_strerror(rc));
		return -1;
	}
	int fd = -1;
	for (a = res; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(why, why_len, "cannot connect to %s:%d: %s", u->host, u->port, strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	SSL *ssl = SSL_new(c->ctx);
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, u->host);
	SSL_set1_host(ssl, u->host);
	static const unsigned char alpn[] = { 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
	SSL_set_alpn_protos(ssl, alpn, sizeof alpn);
	if (SSL_connect(ssl) != 1) {
		unsigned long e = ERR_get_error();
		snprintf(why, why_len, "TLS with %s:%d failed: %s", u->host, u->port,
			 e ? ERR_reason_error_string(e) : "handshake refused");
		SSL_free(ssl);
		close(fd);
		return -1;
	}
	c->ssl = ssl;
	c->fd = fd;
	snprintf(c->host, sizeof c->host, "%s", u->host);
	c->port = u->port;
	return 0;
}

/* SSL_write until everything is written (the context may allow partial writes). */
static int write_all(SSL *ssl, const char *p, size_t n)
{
	while (n) {
		int w = SSL_write(ssl, p, n > 1 << 30 ? 1 << 30 : (int)n);
		if (w <= 0)
			return w;
		p += w;
		n -= (size_t)w;
	}
	return 1;
}

/* Reads until the buffer holds at least need bytes (or EOF), straight into its free space. */
static int fill(struct cli_https *c, struct kz_buf *in, size_t need)
{
	while (in->len < need) {
		size_t room = need - in->len > 16384 ? need - in->len : 16384;
		if (kz_buf_reserve(in, room) && kz_buf_reserve(in, room = need - in->len)) /* near the cap: exactly */
			return -1;
		int n = SSL_read(c->ssl, kz_buf_tail(in), room > INT32_MAX ? INT32_MAX : (int)room);
		if (n <= 0)
			return -1;
		in->len += (size_t)n;
	}
	return 0;
}

static const char *find_crlf2(const struct kz_buf *in)
{
	return memmem(kz_buf_head(in), in->len, "\r\n\r\n", 4);
}

int cli_https_request(struct cli_https *c, const char *method, const struct cli_url *u, const char *extra_headers,
		      const char *body, size_t body_len, struct cli_resp *resp, char *why, size_t why_len)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (c->ssl && (strcmp(c->host, u->host) != 0 || c->port != u->port))
			cli_https_close(c);
		bool fresh = !c->ssl;
		if (!c->ssl && connect_to(c, u, why, why_len))
			return -1;
		char head[4096];
		int hn = snprintf(head, sizeof head,
				  "%s %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: kizuna/%s\r\nContent-Length: %zu\r\n%s%s%s%s\r\n",
				  method, u->path, u->host, u->port, KZ_VERSION, body_len, c->auth ? "Authorization: " : "",
				  c->auth ? c->auth : "", c->auth ? "\r\n" : "", extra_headers ? extra_headers : "");
		if (hn <= 0 || (size_t)hn >= sizeof head) {
			snprintf(why, why_len, "request head too long");
			return -1;
		}
		int w1 = write_all(c->ssl, head, (size_t)hn), w2 = w1 > 0 && body_len ? write_all(c->ssl, body, body_len) : 1;
		if (w1 <= 0 || w2 <= 0) {
			int e = SSL_get_error(c->ssl, w1 <= 0 ? w1 : w2);
			unsigned long ee = ERR_get_error();
			cli_https_close(c);
			if (!fresh)
				continue; /* the server closed a kept-alive connection: once more */
			snprintf(why, why_len, "cannot send to %s:%d (TLS error %d%s%s)", u->host, u->port, e, ee ? ": " : "",
				 ee ? ERR_reason_error_string(ee) : "");
			return -1;
		}
		struct kz_buf in;
		kz_buf_init(&in, 0);
		const char *end;
		while (!(end = find_crlf2(&in))) {
			if (in.len > 65536 || fill(c, &in, in.len + 1)) {
				kz_buf_cleanup(&in);
				cli_https_close(c);
				if (!fresh && in.len == 0)
					goto retry;
				snprintf(why, why_len, "no complete answer from %s:%d", u->host, u->port);
				return -1;
			}
		}
		size_t hl = (size_t)(end - (const char *)kz_buf_head(&in)) + 4;
		char *h = strndup((const char *)kz_buf_head(&in), hl);
		memset(resp, 0, sizeof *resp);
		kz_buf_init(&resp->body, c->max_body);
		if (sscanf(h, "HTTP/1.%*d %d", &resp->status) != 1) {
			free(h);
			kz_buf_cleanup(&in);
			snprintf(why, why_len, "not an HTTP answer from %s:%d", u->host, u->port);
			return -1;
		}
		long long clen = -1;
		bool chunked = false, close_after = false;
		for (char *sv = NULL, *line = strtok_r(h, "\r\n", &sv); line; line = strtok_r(NULL, "\r\n", &sv)) {
			if (strncasecmp(line, "content-length:", 15) == 0)
				clen = atoll(line + 15);
			else if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strcasestr(line, "chunked"))
				chunked = true;
			else if (strncasecmp(line, "connection:", 11) == 0 && strcasestr(line, "close"))
				close_after = true;
			else if (strncasecmp(line, "x-taxii-date-added-last:", 24) == 0) {
				const char *v = line + 24;
				while (*v == ' ')
					v++;
				snprintf(resp->date_added_last, sizeof resp->date_added_last, "%s", v);
			}
		}
		free(h);
		kz_buf_consume(&in, hl);
		int rc = 0;
		if (chunked) {
			for (;;) {
				const char *nl;
				while (!(nl = memmem(kz_buf_head(&in), in.len, "\r\n", 2)))
					if (fill(c, &in, in.len + 1)) {
						rc = -1;
						break;
					}
				if (rc)
					break;
				size_t sz = strtoul((const char *)kz_buf_head(&in), NULL, 16);
				kz_buf_consume(&in, (size_t)(nl - (const char *)kz_buf_head(&in)) + 2);
				if (fill(c, &in, sz + 2)) {
					rc = -1;
					break;
				}
				if (sz == 0)
					break;
				if (kz_buf_append(&resp->body, kz_buf_head(&in), sz)) {
					rc = -1;
					break;
				}
				kz_buf_consume(&in, sz + 2);
			}
		} else if (clen >= 0) {
			/* the body is read into its own buffer, sized once: no copy from in */
			size_t have = in.len < (size_t)clen ? in.len : (size_t)clen;
			if (kz_buf_reserve(&resp->body, (size_t)clen) || kz_buf_append(&resp->body, kz_buf_head(&in), have) ||
			    fill(c, &resp->body, (size_t)clen))
				rc = -1;
		} else { /* until the server closes */
			while (fill(c, &in, in.len + 1) == 0)
				;
			if (kz_buf_append(&resp->body, kz_buf_head(&in), in.len))
				rc = -1;
			close_after = true;
		}
		kz_buf_cleanup(&in);
		if (close_after || rc)
			cli_https_close(c);
		if (rc) {
			kz_buf_cleanup(&resp->body);
			snprintf(why, why_len, "the answer from %s:%d was cut short or too large", u->host, u->port);
			return -1;
		}
		return 0;
	retry:;
	}
	snprintf(why, why_len, "no answer from %s:%d", u->host, u->port);
	return -1;
}
