/* store_read.c — random access to the record log by position (kz_reclog_reader, store.h),
 * with an optional read-ahead window. */
#include "store/store.h"
#include "store/store_frame.h"
#include "base/kz_err.h"
#include "base/kz_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void kz_reclog_reader_init(struct kz_reclog_reader *r, const char *dir, uint32_t max_record_bytes)
{
	memset(r, 0, sizeof *r);
	r->dir = dir;
	r->max_record_bytes = max_record_bytes;
	r->fd = -1;
}

void kz_reclog_reader_readahead(struct kz_reclog_reader *r, size_t bytes)
{
	free(r->win);
	r->win = NULL;
	r->win_cap = bytes;
	r->win_size = r->win_len = 0;
}

void kz_reclog_reader_forget(struct kz_reclog_reader *r) { r->win_len = 0; }

static void reader_fd_close(struct kz_reclog_reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	r->win_len = 0;
}

void kz_reclog_reader_close(struct kz_reclog_reader *r)
{
	reader_fd_close(r);
	free(r->win); /* read-ahead stays on: the window is allocated again at the next read */
	r->win = NULL;
	r->win_size = 0;
}

/* Fills the window from off on with at least need bytes (fewer only at the end of the file):
 * KZ_ENOTFOUND when the file ends before need. */
int kz_reclog_win_read(int fd, uint8_t **buf, size_t *cap, uint64_t off, size_t want, size_t need, size_t *got)
{
	if (want > *cap) {
		uint8_t *w = realloc(*buf, want);
		if (!w)
			return errno = ENOMEM, KZ_ENOMEM;
		*buf = w;
		*cap = want;
	}
	if (kz_pread_upto(fd, *buf, want, off, got))
		return KZ_EIO;
	return *got < need ? (errno = EIO, KZ_ENOTFOUND) : KZ_OK;
}

static int win_fill(struct kz_reclog_reader *r, uint64_t off, size_t need)
{
	r->win_len = 0;
	size_t got;
	int rc = kz_reclog_win_read(r->fd, &r->win, &r->win_size, off, need > r->win_cap ? need : r->win_cap, need, &got);
	if (rc)
		return rc;
	r->win_off = off;
	r->win_len = got;
	return KZ_OK;
}

/* The frame at off from the window: its header and body in place. */
static int win_frame(struct kz_reclog_reader *r, uint64_t off, const uint8_t **h)
{
	bool in = r->win_len && off >= r->win_off && off + FRAME_HDR <= r->win_off + r->win_len;
	if (!in) {
		int rc = win_fill(r, off, FRAME_HDR);
		if (rc)
			return rc;
	}
	uint32_t len = get32(r->win + (off - r->win_off));
	if (len > r->max_record_bytes)
		return KZ_ENOTFOUND;
	if (off + FRAME_HDR + len > r->win_off + r->win_len) {
		int rc = win_fill(r, off, FRAME_HDR + (size_t)len);
		if (rc)
			return rc;
	}
	*h = r->win + (off - r->win_off);
	return KZ_OK;
}

int kz_reclog_read(struct kz_reclog_reader *r, const struct kz_reclog_pos *pos, uint64_t seq, struct kz_buf *out)
{
	if (r->fd < 0 || r->seg != pos->seg) {
		reader_fd_close(r);
		char path[4200];
		seg_path(path, sizeof path, r->dir, pos->seg);
		r->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (r->fd < 0)
			return errno == ENOENT ? KZ_ENOTFOUND : KZ_EIO;
		r->seg = pos->seg;
	}
	if (r->win_cap) {
		const uint8_t *h;
		int rc = win_frame(r, pos->off, &h);
		if (rc)
			return rc;
		uint32_t len = get32(h);
		if (get64(h + 8) != seq || len == 0)
			return KZ_ENOTFOUND; /* another record there now: the segment was rewritten */
		if (get32(h + 4) != frame_crc(h, h + FRAME_HDR, len))
			return KZ_EIO;
		kz_buf_reset(out);
		return kz_buf_append(out, h + FRAME_HDR, len);
	}
	uint8_t h[FRAME_HDR];
	if (kz_pread_all(r->fd, h, FRAME_HDR, pos->off))
		return KZ_ENOTFOUND; /* the segment was rewritten shorter */
	uint32_t len = get32(h);
	if (get64(h + 8) != seq || len == 0 || len > r->max_record_bytes)
		return KZ_ENOTFOUND; /* another record there now: the segment was rewritten */
	kz_buf_reset(out);
	int rc = kz_buf_reserve(out, len);
	if (rc)
		return rc;
	if (kz_pread_all(r->fd, kz_buf_tail(out), len, pos->off + FRAME_HDR))
		return KZ_ENOTFOUND; /* cut shorter, as with the header */
	if (get32(h + 4) != frame_crc(h, kz_buf_tail(out), len))
		return KZ_EIO;
	out->len = len;
	return KZ_OK;
}

