/* store_frame.h — the record log's on-disk frame (inside the store module only): a segment
 * starts with a SEG_HDR-byte header; each frame is FRAME_HDR bytes (length, CRC32C of the
 * length, sequence number and body, sequence number; little-endian) and then the body. */
#ifndef KZ_STORE_FRAME_H
#define KZ_STORE_FRAME_H

#include "store/store.h" /* kz_crc32c */

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <stdint.h>
#include <stdio.h>

#define SEG_HDR 32
#define FRAME_HDR 16

static inline void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static inline uint32_t frame_crc(const uint8_t *hdr, const uint8_t *body, uint32_t len)
{
	uint32_t c = kz_crc32c(0, hdr, 4);        /* length */
	c = kz_crc32c(c, hdr + 8, 8);             /* seq */
	return kz_crc32c(c, body, len);
}

static const char SEG_MAGIC[8] = { 'K', 'Z', 'L', 'O', 'G', 'S', 'E', 'G' };

static inline bool seg_header_ok(const uint8_t *h, size_t n, uint64_t base)
{
	return n >= SEG_HDR && memcmp(h, SEG_MAGIC, 8) == 0 && get32(h + 8) == 1 && get64(h + 16) == base &&
	       get32(h + 28) == kz_crc32c(0, h, 28);
}

/* Reads [off, off + want) of fd into *buf (grown to want when *cap is smaller): *got bytes,
 * at least need. KZ_ENOMEM, KZ_EIO (errno), or KZ_ENOTFOUND when the file ends before need
 * (it was rewritten or cut shorter). The read windows of store_read.c and store_scan.c. */
int kz_reclog_win_read(int fd, uint8_t **buf, size_t *cap, uint64_t off, size_t want, size_t need, size_t *got);

static inline void seg_path(char *buf, size_t len, const char *dir, uint64_t base)
{
	snprintf(buf, len, "%s/%020" PRIu64 ".seg", dir, base);
}

#endif
