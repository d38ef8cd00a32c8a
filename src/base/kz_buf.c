/* kz_buf.c — growable byte buffer with a hard cap. */
#include "base/kz_buf.h"
#include "base/kz_err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void kz_buf_init(struct kz_buf *b, size_t max)
{
	memset(b, 0, sizeof *b);
	b->max = max ? max : SIZE_MAX;
}

void kz_buf_cleanup(struct kz_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->off = b->cap = 0;
}

int kz_buf_reserve_exact(struct kz_buf *b, size_t n)
{
	if (b->cap || b->len)
		return kz_buf_reserve(b, n);
	if (n > b->max)
		return KZ_ETOOBIG;
	b->data = malloc(n ? n : 1);
	if (!b->data)
		return KZ_ENOMEM;
	b->off = 0;
	b->cap = n ? n : 1;
	return KZ_OK;
}

int kz_buf_reserve(struct kz_buf *b, size_t n)
{
	if (n > b->max - b->len)
		return KZ_ETOOBIG;
	if (b->off + b->len + n <= b->cap)
		return KZ_OK;
	if (b->off > 0 && b->len + n <= b->cap) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
		return KZ_OK;
	}
	size_t want = b->len + n;
	size_t ncap = b->cap ? b->cap : 256;
	while (ncap < want)
		ncap *= 2;
	uint8_t *p = malloc(ncap);
	if (!p)
		return KZ_ENOMEM;
	if (b->len)
		memcpy(p, b->data + b->off, b->len);
	free(b->data);
	b->data = p;
	b->off = 0;
	b->cap = ncap;
	return KZ_OK;
}

int kz_buf_append(struct kz_buf *b, const void *p, size_t n)
{
	int rc = kz_buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(kz_buf_tail(b), p, n);
	b->len += n;
	return KZ_OK;
}

void kz_buf_consume(struct kz_buf *b, size_t n)
{
	if (n >= b->len) {
		b->off = 0;
		b->len = 0;
		return;
	}
	b->off += n;
	b->len -= n;
}

void kz_buf_reset(struct kz_buf *b)
{
	b->off = 0;
	b->len = 0;
}

void kz_buf_shrink(struct kz_buf *b, size_t keep)
{
	if (b->len == 0 && b->cap > keep) {
		free(b->data);
		b->data = NULL;
		b->cap = 0;
		b->off = 0;
	}
}
