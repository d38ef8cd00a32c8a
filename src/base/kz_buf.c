/* kz_buf.c — growable byte buffer with a hard cap. */
#include "base/kz_buf.h"
#include "base/kz_err.h"

#include <stdint.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
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

int kz_buf_appendf(struct kz_buf *b, const char *fmt, ...)
{
	char tmp[1025];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof tmp)
		return KZ_ETOOBIG;
	return kz_buf_append(b, tmp, (size_t)n);
}

int kz_buf_append_u64(struct kz_buf *b, uint64_t v)
{
	char d[20];
	int n = 0;
	do
		d[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	int rc = kz_buf_reserve(b, (size_t)n);
	if (rc)
		return rc;
	uint8_t *p = kz_buf_tail(b);
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)d[n - 1 - i];
	b->len += (size_t)n;
	return KZ_OK;
}

int kz_buf_append_fixed(struct kz_buf *b, double v, unsigned decimals)
{
	static const double scale[] = { 1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9 };
	if (decimals > 9 || !(v > -1e9 && v < 1e9))
		return KZ_EINVAL;
	bool neg = v < 0;
	double x = (neg ? -v : v) * scale[decimals] + 0.5;
	if (x >= 9007199254740992.0) /* 2^53: the scaled value has no exact integer part any more */
		return KZ_EINVAL;
	uint64_t q = (uint64_t)x, ip = q / (uint64_t)scale[decimals], fp = q % (uint64_t)scale[decimals];
	char t[48];
	int n = 0;
	if (neg && q)
		t[n++] = '-';
	char d[20];
	int k = 0;
	do
		d[k++] = (char)('0' + ip % 10);
	while ((ip /= 10));
	while (k)
		t[n++] = d[--k];
	if (decimals) {
		t[n++] = '.';
		for (unsigned i = decimals; i-- > 0;) {
			t[n + (int)i] = (char)('0' + fp % 10);
			fp /= 10;
		}
		n += (int)decimals;
	}
	return kz_buf_append(b, t, (size_t)n);
}
