/* store_scan.c — kz_reclog_scan: the followers' sequential reads of the record log (index,
 * entities, detection, tasks, the cluster's replicator, replays), through a read window.
 *
 * Why reads and not a mapping: the followers read every frame once, right after it is written.
 * Through a mapping each page is faulted into the thread's page tables on first touch. On this
 * project's reference machine (a VM) that cost about 1.9 us a page: 30 ms to touch 64 MB of a
 * segment in the page cache, against 5.3 ms to pread the same 64 MB into a 128 KiB buffer
 * (measured with throwaway programs, BENCHMARKS.md "TAXII ingest"; MADV_POPULATE_READ did
 * not help: 1.9 ms to populate and 26 ms to touch). The faults showed in profiles as crc_sse42
 * in the followers' scans, 15 % of the node's CPU during a TAXII POST of ATT&CK ICS.
 *
 * Each thread keeps the segment file it read last open, and a window of up to SCAN_WIN bytes
 * (more for a frame that does not fit, up to the largest record). The window is read afresh at
 * each scan and never past the file's size at the scan's start: the bytes below that size are
 * whole (an append updates the size after copying its data), whatever is being appended now
 * is left to the next scan. The damage rules are those of store_log.c. */
#include "store/store.h"
#include "store/store_frame.h"
#include "base/kz_err.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCAN_WIN ((size_t)256 << 10)
#define SCAN_KEEP ((size_t)1 << 20) /* a larger window (one large record) is let go after the scan */

struct scan_cache {
	char dir[4096];
	uint64_t base;
	dev_t dev;
	ino_t ino;
	int fd;
	uint64_t size; /* the file's size at this scan's start */
	uint8_t *buf;
	size_t cap;
	uint64_t off; /* buf holds the file's bytes [off, off + len) */
	size_t len;
};

static pthread_key_t scan_key;
static pthread_once_t scan_once = PTHREAD_ONCE_INIT;

static void cache_close(struct scan_cache *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->dir[0] = 0;
	c->len = 0;
}

static void cache_free(void *v)
{
	struct scan_cache *c = v;
	cache_close(c);
	free(c->buf);
	free(c);
}

static void scan_key_init(void) { (void)pthread_key_create(&scan_key, cache_free); }

static struct scan_cache *thread_cache(void)
{
	(void)pthread_once(&scan_once, scan_key_init);
	struct scan_cache *c = pthread_getspecific(scan_key);
	if (!c && (c = calloc(1, sizeof *c))) {
		c->fd = -1;
		if (pthread_setspecific(scan_key, c)) {
			free(c);
			c = NULL;
		}
	}
	return c;
}

/* Opens segment base of dir (or keeps it open: the same file, not one replaced under its
 * name by retention) and takes its size. */
static int seg_open(struct scan_cache *c, const char *dir, uint64_t base, char *path, size_t path_len, char *why,
		    size_t why_len)
{
	seg_path(path, path_len, dir, base);
	struct stat st;
	if (stat(path, &st)) {
		int e = errno;
		snprintf(why, why_len, "%s: cannot read: %s", path, strerror(e));
		return e == ENOENT ? KZ_ENOTFOUND : KZ_EIO;
	}
	c->len = 0;
	if (c->fd >= 0 && c->base == base && c->ino == st.st_ino && c->dev == st.st_dev && strcmp(c->dir, dir) == 0) {
		c->size = (uint64_t)st.st_size;
		return KZ_OK;
	}
	cache_close(c);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat fst; /* of what was opened: the file may have changed since the stat */
	if (fd < 0 || fstat(fd, &fst) || strlen(dir) >= sizeof c->dir) {
		int e = fd < 0 ? errno : ENAMETOOLONG;
		if (fd >= 0)
			close(fd);
		snprintf(why, why_len, "%s: cannot read: %s", path, strerror(e));
		return e == ENOENT ? KZ_ENOTFOUND : KZ_EIO;
	}
	snprintf(c->dir, sizeof c->dir, "%s", dir);
	c->base = base;
	c->dev = fst.st_dev;
	c->ino = fst.st_ino;
	c->fd = fd;
	c->size = (uint64_t)fst.st_size;
	return KZ_OK;
}

/* The file's bytes [off, off + need) in the window (need <= size - off): a pointer to them, or
 * NULL with errno (a read error, or a file cut shorter while read). */
static const uint8_t *win_at(struct scan_cache *c, uint64_t off, size_t need)
{
	if (off >= c->off && off + need <= c->off + c->len)
		return c->buf + (off - c->off);
	size_t want = need > SCAN_WIN ? need : SCAN_WIN, got;
	if (want > c->size - off)
		want = (size_t)(c->size - off);
	c->len = 0;
	/* short: the file was cut shorter since its size was taken */
	if (kz_reclog_win_read(c->fd, &c->buf, &c->cap, off, want, need, &got))
		return NULL;
	c->off = off;
	c->len = got;
	return c->buf + (off - c->off);
}

enum { FRAME_OK, FRAME_BAD, FRAME_IOERR };

/* The frame at off: FRAME_OK with its header h (body after it), length and seq; FRAME_BAD with
 * *why (damage); FRAME_IOERR (errno). */
static int frame_at(struct scan_cache *c, uint64_t off, uint32_t max, const uint8_t **h, uint32_t *len,
		    uint64_t *seq, const char **why)
{
	if (c->size - off < FRAME_HDR)
		return *why = "frame header cut off", FRAME_BAD;
	const uint8_t *p = win_at(c, off, FRAME_HDR);
	if (!p)
		return FRAME_IOERR;
	uint32_t n = get32(p);
	if (n == 0 || n > max)
		return *why = "frame length out of range", FRAME_BAD;
	if (n > c->size - off - FRAME_HDR)
		return *why = "frame runs past the end of the segment", FRAME_BAD;
	if (!(p = win_at(c, off, FRAME_HDR + (size_t)n)))
		return FRAME_IOERR;
	if (get32(p + 4) != frame_crc(p, p + FRAME_HDR, n))
		return *why = "CRC32C mismatch", FRAME_BAD;
	*h = p;
	*len = n;
	*seq = get64(p + 8);
	return FRAME_OK;
}

/* Is there a valid frame anywhere after off (then the damage at off is not a torn end)? */
static int valid_after(struct scan_cache *c, uint64_t off, uint32_t max)
{
	for (uint64_t p = off + 1; p + FRAME_HDR <= c->size; p++) {
		const uint8_t *h = win_at(c, p, FRAME_HDR);
		if (!h)
			return -1;
		uint32_t len = get32(h), n;
		if (len == 0 || len > max || len > c->size - p - FRAME_HDR)
			continue;
		uint64_t seq;
		const char *why;
		int fr = frame_at(c, p, max, &h, &n, &seq, &why);
		if (fr != FRAME_BAD)
			return fr == FRAME_OK ? 1 : -1;
	}
	return 0;
}

static void io_why(char *why, size_t why_len, const char *path, int e)
{
	snprintf(why, why_len, "%s: cannot read: %s", path, strerror(e ? e : EIO));
}

int kz_reclog_scan(const char *dir, uint64_t from_seq, const struct kz_reclog_pos *hint,
		uint32_t max_record_bytes, kz_reclog_scan_fn cb, void *ctx, char *why, size_t why_len)
{
	uint64_t *base = NULL;
	size_t nseg = 0;
	int rc = kz_reclog_segments(dir, &base, &nseg);
	if (rc) {
		snprintf(why, why_len, "cannot read %s: %s", dir, strerror(errno));
		return rc;
	}
	struct scan_cache *c = thread_cache();
	if (!c) {
		free(base);
		snprintf(why, why_len, "out of memory");
		return KZ_ENOMEM;
	}
	uint64_t last_seq = 0;
	int cbrc = 0;
	for (size_t i = 0; i < nseg && !rc && !cbrc; i++) {
		/* segments wholly before from_seq are skipped without reading */
		if (i + 1 < nseg && base[i + 1] <= from_seq) {
			last_seq = base[i + 1] - 1;
			continue;
		}
		char path[4200];
		if ((rc = seg_open(c, dir, base[i], path, sizeof path, why, why_len)) != KZ_OK) {
			if (rc == KZ_ENOTFOUND) /* removed by retention since we listed it */
				rc = KZ_OK;
			continue;
		}
		bool last = i + 1 == nseg;
		const uint8_t *sh = c->size >= SEG_HDR ? win_at(c, 0, SEG_HDR) : NULL;
		if (c->size >= SEG_HDR && !sh) {
			io_why(why, why_len, path, errno);
			rc = KZ_EIO;
			break;
		}
		if (!sh || !seg_header_ok(sh, SEG_HDR, base[i])) {
			if (!(last && c->size < SEG_HDR)) {
				snprintf(why, why_len, "%s: offset 0: bad segment header", path);
				rc = KZ_EIO;
			}
			break;
		}
		if (last_seq >= base[i])
			last_seq = base[i] - 1;
		uint64_t off = SEG_HDR, seq;
		const uint8_t *h;
		uint32_t len;
		const char *what = NULL;
		if (hint && hint->seg == base[i] && hint->off > SEG_HDR && hint->off < c->size &&
		    frame_at(c, hint->off, max_record_bytes, &h, &len, &seq, &what) == FRAME_OK && seq <= from_seq) {
			off = hint->off; /* resume where the caller left off */
			last_seq = seq - 1;
		}
		while (off < c->size) {
			int fr = frame_at(c, off, max_record_bytes, &h, &len, &seq, &what);
			if (fr == FRAME_OK && seq <= last_seq)
				fr = FRAME_BAD, what = "sequence number does not increase";
			if (fr == FRAME_IOERR) {
				io_why(why, why_len, path, errno);
				rc = KZ_EIO;
				break;
			}
			if (fr == FRAME_BAD) {
				/* a partial frame at the very end of the log is one being written */
				int after = last ? valid_after(c, off, max_record_bytes) : 1;
				if (after < 0) {
					io_why(why, why_len, path, errno);
					rc = KZ_EIO;
				} else if (after) {
					snprintf(why, why_len, "%s: offset %" PRIu64 ": %s", path, off, what);
					rc = KZ_EIO;
				}
				break;
			}
			last_seq = seq;
			if (cb && seq >= from_seq) {
				struct kz_reclog_pos pos = { base[i], off };
				if ((cbrc = cb(ctx, seq, h + FRAME_HDR, len, &pos)))
					break;
			}
			off += FRAME_HDR + (uint64_t)len;
		}
	}
	if (c->cap > SCAN_KEEP) {
		free(c->buf);
		c->buf = NULL;
		c->cap = 0;
	}
	c->len = 0;
	free(base);
	return rc ? rc : cbrc;
}
