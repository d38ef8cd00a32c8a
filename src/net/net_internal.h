/* net_internal.h — what the transport's files share and nobody above sees. */
#ifndef NET_INTERNAL_H
#define NET_INTERNAL_H

#include "net/net.h"

#define TLS_CHUNK 16384

struct wreq {
	uv_write_t req;
	struct net_conn *c;
	size_t len, cap;
	char data[];
};

/* The BIO under every SSL object (net_bio.c; net_conn.c explains why). */
struct net_bio {
	const uint8_t *view;  /* ciphertext from the current read callback, not owned */
	size_t view_len;
	struct kz_buf spill;  /* ciphertext kept across read callbacks */
	struct wreq *wq;      /* ciphertext not yet handed to uv_write */
};

/* Room for n more ciphertext bytes in nb's write block. */
int net_bio_reserve(struct net_bio *nb, size_t n);
/* A new BIO of our method (one per SSL object; the SSL owns it). */
BIO *net_bio_new(void);
/* The BIO state of a connection's SSL object or record layer. */
struct net_bio *net_bio_of(const struct net_conn *c);

#endif
