/* cli_https.h — a small blocking HTTPS/1.1 client for the command line (`kizuna stix`,
 * `kizuna taxii`): TLS 1.3 with the node's client certificate and groups, the server's name
 * verified, keep-alive, Content-Length and chunked bodies. */
#ifndef CLI_HTTPS_H
#define CLI_HTTPS_H

#include "base/kz_buf.h"

#include <openssl/ssl.h>
#include <stddef.h>

struct cli_url {
	char host[256];
	int port;
	char path[2048]; /* with the query */
};

/* https://HOST[:PORT]/PATH; -1 when it is not such a URL. */
int cli_url_parse(const char *url, struct cli_url *u);

struct cli_https {
	SSL_CTX *ctx;
	SSL *ssl;
	int fd;
	char host[256];
	int port;
	const char *auth; /* "Basic …" or NULL */
	size_t max_body;  /* refuse larger answers */
};

struct cli_resp {
	int status;
	struct kz_buf body;
	char date_added_last[64]; /* X-TAXII-Date-Added-Last, "" when absent */
};

/* One request (connecting or reconnecting as needed). extra_headers: "Name: value\r\n"…
 * or NULL. 0 with *resp filled, -1 with why. */
int cli_https_request(struct cli_https *c, const char *method, const struct cli_url *u, const char *extra_headers,
		      const char *body, size_t body_len, struct cli_resp *resp, char *why, size_t why_len);
void cli_https_close(struct cli_https *c);

#endif
