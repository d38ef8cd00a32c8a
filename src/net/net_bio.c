/* net_bio.c — the BIO under every server and client SSL object of net_conn.c: reads are
 * served straight from the loop's socket buffer (or the spill buffer that keeps ciphertext
 * across read callbacks), and ciphertext is written straight into the block that becomes the
 * next uv_write (net_conn.c explains why). */
#include "net/net.h"
#include "net/net_internal.h"
#include "base/kz_err.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int net_bio_reserve(struct net_bio *nb, size_t n)
{
	size_t len = nb->wq ? nb->wq->len : 0, cap = nb->wq ? nb->wq->cap : 0;
	if (cap - len >= n)
		return KZ_OK;
	/* First allocation: what is asked for (the flush reserves the exact ciphertext size),
	 * so that many small writes queued to a slow reader do not each hold a large block. */
	size_t ncap = cap ? cap * 2 : (n + 63) & ~(size_t)63;
	while (ncap - len < n)
		ncap *= 2;
	struct wreq *w = realloc(nb->wq, sizeof *w + ncap);
	if (!w)
		return KZ_ENOMEM;
	if (!nb->wq)
		w->len = 0;
	w->cap = ncap;
	nb->wq = w;
	return KZ_OK;
}

static int nbio_write(BIO *b, const char *p, size_t n, size_t *written)
{
	struct net_bio *nb = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (net_bio_reserve(nb, n))
		return 0;
	memcpy(nb->wq->data + nb->wq->len, p, n);
	nb->wq->len += n;
	*written = n;
	return 1;
}

static int nbio_read(BIO *b, char *p, size_t n, size_t *got)
{
	struct net_bio *nb = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (nb->spill.len) {
		size_t k = n < nb->spill.len ? n : nb->spill.len;
		memcpy(p, kz_buf_head(&nb->spill), k);
		kz_buf_consume(&nb->spill, k);
		if (nb->spill.len == 0)
			kz_buf_shrink(&nb->spill, 0);
		*got = k;
		return 1;
	}
	if (nb->view_len) {
		size_t k = n < nb->view_len ? n : nb->view_len;
		memcpy(p, nb->view, k);
		nb->view += k;
		nb->view_len -= k;
		*got = k;
		return 1;
	}
	BIO_set_retry_read(b);
	*got = 0;
	return 0;
}

static long nbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct net_bio *nb = BIO_get_data(b);
	(void)num, (void)ptr;
	switch (cmd) {
	case BIO_CTRL_PENDING:
		return (long)(nb->spill.len + nb->view_len);
	case BIO_CTRL_WPENDING:
		return nb->wq ? (long)nb->wq->len : 0;
	case BIO_CTRL_FLUSH:
		return 1;
	default:
		return 0;
	}
}

static int nbio_create(BIO *b)
{
	struct net_bio *nb = calloc(1, sizeof *nb);
	if (!nb)
		return 0;
	kz_buf_init(&nb->spill, 0);
	BIO_set_data(b, nb);
	BIO_set_init(b, 1);
	return 1;
}

static int nbio_destroy(BIO *b)
{
	struct net_bio *nb = BIO_get_data(b);
	if (nb) {
		kz_buf_cleanup(&nb->spill);
		free(nb->wq);
		free(nb);
	}
	BIO_set_data(b, NULL);
	return 1;
}

static BIO_METHOD *nbio_method;
static void nbio_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "kizuna-conn");
	if (m && BIO_meth_set_write_ex(m, nbio_write) && BIO_meth_set_read_ex(m, nbio_read) &&
	    BIO_meth_set_ctrl(m, nbio_ctrl) && BIO_meth_set_create(m, nbio_create) &&
	    BIO_meth_set_destroy(m, nbio_destroy))
		nbio_method = m;
}

struct net_bio *net_bio_of(const struct net_conn *c)
{
	return BIO_get_data(c->ssl ? SSL_get_rbio(c->ssl) : net_rl_bio(c->rl));
}


BIO *net_bio_new(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, nbio_method_init);
	return nbio_method ? BIO_new(nbio_method) : NULL;
}
