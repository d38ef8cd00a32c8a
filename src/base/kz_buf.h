/* kz_buf.h — growable byte buffer with a hard cap checked before every allocation. */
#ifndef KZ_BUF_H
#define KZ_BUF_H

#include <stddef.h>
#include <stdint.h>

struct kz_buf {
	uint8_t *data; /* owns */
	size_t len;    /* bytes in use, starting at data[off] */
	size_t off;    /* consumed prefix */
	size_t cap;    /* allocated */
	size_t max;    /* hard cap on len; 0 = SIZE_MAX */
};

void kz_buf_init(struct kz_buf *b, size_t max);
void kz_buf_cleanup(struct kz_buf *b);
/* Makes room for n more bytes; KZ_ETOOBIG over the cap, KZ_ENOMEM. On error nothing changes. */
int kz_buf_reserve(struct kz_buf *b, size_t n);
/* As kz_buf_reserve, but an empty buffer gets exactly n bytes (a buffer that is handed over
 * whole and held for a while: a record on its way to the disk). */
int kz_buf_reserve_exact(struct kz_buf *b, size_t n);
int kz_buf_append(struct kz_buf *b, const void *p, size_t n);
/* Appends printf's output (at most 1024 bytes: KZ_ETOOBIG beyond, nothing appended). */
int kz_buf_appendf(struct kz_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends v in decimal. */
int kz_buf_append_u64(struct kz_buf *b, uint64_t v);
/* Appends v with exactly `decimals` (0-9) digits after the point, rounded half away from
 * zero, as printf's %.*f would write it but without its cost (no locale, no long division);
 * KZ_EINVAL (nothing appended) unless v is finite, |v| < 1e9 and |v| * 10^decimals < 2^53.
 * Digit for digit printf's while |v| * 10^decimals < 10^12 (tested); beyond, the last digit
 * may differ by one (the scaling rounds). */
int kz_buf_append_fixed(struct kz_buf *b, double v, unsigned decimals);
/* Pointer to the first unconsumed byte; never NULL, even before the first allocation. */
static inline uint8_t *kz_buf_head(const struct kz_buf *b)
{
	static uint8_t empty[1];
	return b->data ? b->data + b->off : empty;
}
/* Pointer to free space after the data (after kz_buf_reserve). */
static inline uint8_t *kz_buf_tail(const struct kz_buf *b) { return b->data + b->off + b->len; }
void kz_buf_consume(struct kz_buf *b, size_t n);
void kz_buf_reset(struct kz_buf *b);
/* Releases memory when the buffer is empty and larger than keep bytes (idle connections). */
void kz_buf_shrink(struct kz_buf *b, size_t keep);

#endif
