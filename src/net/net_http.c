/* net_http.c — the request head of the minimal HTTPS listener (HTTP/1.1, RFC 9112 §3):
 * "METHOD SP TARGET SP HTTP/1.x CRLF … CRLF CRLF". Only the request line is interpreted. */
#include "net/net.h"

#include <string.h>

int net_http_parse(const char *b, size_t n, size_t max, struct net_http_req *r)
{
	memset(r, 0, sizeof *r);
	/* the head ends at the first empty line; bytes after it are not the head's */
	const char *end = memmem(b, n, "\r\n\r\n", 4);
	if ((end ? (size_t)(end - b) + 4 : n) > max) {
		r->status = 431;
		r->why = "request headers over https.max_request_bytes";
		return -1;
	}
	if (memchr(b, 0, end ? (size_t)(end - b) + 4 : n)) {
		r->status = 400;
		r->why = "malformed request";
		return -1;
	}
	if (!end)
		return 1;
	size_t head = (size_t)(end - b);
	const char *sp1 = memchr(b, ' ', head);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', head - (size_t)(sp1 + 1 - b)) : NULL;
	const char *eol = memmem(b, head + 2, "\r\n", 2);
	if (!sp1 || !sp2 || sp1 == b || sp2 == sp1 + 1 || eol < sp2 || (size_t)(eol - sp2 - 1) != 8 ||
	    memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1')) {
		r->status = 400;
		r->why = "malformed request line";
		return -1;
	}
	r->method = b;
	r->method_len = (size_t)(sp1 - b);
	r->path = sp1 + 1;
	r->path_len = (size_t)(sp2 - sp1 - 1);
	return 0;
}
