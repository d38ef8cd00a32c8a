/* store_log.c — the segmented record log (format in docs/STORE.md).
 *
 * Segment file DIR/<base seq, 20 digits>.seg: a 32-byte header, then frames
 *   u32 body length | u32 CRC32C over (length, seq, body) | u64 seq | body
 * Integers little-endian. Sequence numbers start at 1 and strictly increase; only
 * `kizuna store repair` leaves gaps (the records it had to quarantine).
 *
 * Damage rules (recovery and scans): a bad frame in the last segment with no valid frame
 * after it is the torn end of an interrupted write — recovery cuts it off; anything else is
 * corruption, reported with file and offset, and the node does not start until repaired. */
#include "store/store.h"
#include "store/store_frame.h"
#include "base/kz_array.h"
#include "base/kz_err.h"
#include "base/kz_file.h"
#include "base/kz_log.h"
#include "base/kz_time.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

struct kz_reclog {
	struct kz_reclog_config cfg;
	char *dir;
	int fd, dirfd;
	uint64_t seg_base, seg_size, seg_records;
	uint64_t next_seq;
	uint64_t last_sync_ms;
	bool dirty; /* written since the last fdatasync */
	struct kz_buf wbuf;       /* frame headers of the write being built, FRAME_HDR each */
	struct kz_bytes *wbody;   /* and their bodies (the caller's, not copied) */
	size_t n_wbody, cap_wbody;
};

/* ---------- segment files ---------- */

struct seglist {
	uint64_t *base;
	size_t n;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int list_segments(const char *dir, struct seglist *out)
{
	out->base = NULL;
	out->n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? KZ_OK : KZ_EIO;
	size_t cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l != 24 || strcmp(e->d_name + 20, ".seg") != 0 ||
		    strspn(e->d_name, "0123456789") != 20)
			continue;
		if (out->n == cap) {
			uint64_t *nb = kz_array_grow(out->base, sizeof *nb, cap, (size_t)out->n + 1, 16, SIZE_MAX, &cap);
			if (!nb) {
				closedir(d);
				free(out->base);
				return KZ_ENOMEM;
			}
			out->base = nb;
		}
		out->base[out->n++] = strtoull(e->d_name, NULL, 10);
	}
	closedir(d);
	if (out->n > 1)
		qsort(out->base, out->n, sizeof *out->base, cmp_u64);
	return KZ_OK;
}


static void seg_header(uint8_t h[SEG_HDR], uint64_t base)
{
	memset(h, 0, SEG_HDR);
	memcpy(h, SEG_MAGIC, 8);
	put32(h + 8, 1);
	put64(h + 16, base);
	put32(h + 28, kz_crc32c(0, h, 28));
}

/* A mapped segment. */
struct seg {
	const uint8_t *p;
	size_t size;
	int fd;
	uint64_t base;
};

/* Maps segment `base` of dir; path receives its file name (for messages). */
static int seg_map(const char *dir, uint64_t base, struct seg *s, char *path, size_t path_len,
		   char *why, size_t why_len)
{
	seg_path(path, path_len, dir, base);
	s->p = NULL;
	s->size = 0;
	s->base = base;
	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	void *m = NULL;
	if (s->fd < 0 || fstat(s->fd, &st) ||
	    (st.st_size && (m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, s->fd, 0)) == MAP_FAILED)) {
		int e = errno;
		snprintf(why, why_len, "%s: cannot read: %s", path, strerror(e));
		if (s->fd >= 0)
			close(s->fd);
		s->fd = -1;
		return e == ENOENT ? KZ_ENOTFOUND : KZ_EIO;
	}
	s->size = (size_t)st.st_size;
	s->p = m;
	return KZ_OK;
}

static void seg_unmap(struct seg *s)
{
	if (s->p)
		munmap((void *)s->p, s->size);
	if (s->fd >= 0)
		close(s->fd);
}

/* Checks the frame at off; on success *next is the offset after it. */
static bool frame_ok(const struct seg *s, size_t off, uint32_t max, size_t *next, uint64_t *seq,
		     const char **why)
{
	if (s->size - off < FRAME_HDR)
		return *why = "frame header cut off", false;
	const uint8_t *h = s->p + off;
	uint32_t len = get32(h);
	if (len == 0 || len > max)
		return *why = "frame length out of range", false;
	if (len > s->size - off - FRAME_HDR)
		return *why = "frame runs past the end of the segment", false;
	if (get32(h + 4) != frame_crc(h, h + FRAME_HDR, len))
		return *why = "CRC32C mismatch", false;
	*seq = get64(h + 8);
	*next = off + FRAME_HDR + len;
	return true;
}

/* The first offset after off at which a valid frame starts, or 0. */
static size_t resync(const struct seg *s, size_t off, uint32_t max, uint64_t *seq)
{
	for (size_t p = off + 1; p + FRAME_HDR <= s->size; p++) {
		size_t nx;
		const char *why;
		uint32_t len = get32(s->p + p);
		if (len == 0 || len > max || len > s->size - p - FRAME_HDR)
			continue;
		if (frame_ok(s, p, max, &nx, seq, &why))
			return p;
	}
	return 0;
}

/* Walks one segment. Returns KZ_OK at its end, or KZ_EIO with *bad_off and *why at damage. */
static int seg_walk(const struct seg *s, size_t off, uint32_t max, uint64_t *last_seq,
		    uint64_t *records, size_t *bad_off, const char **why, kz_reclog_scan_fn cb, void *ctx,
		    uint64_t from, int *cb_rc)
{
	while (off < s->size) {
		size_t nx;
		uint64_t seq;
		if (!frame_ok(s, off, max, &nx, &seq, why)) {
			*bad_off = off;
			return KZ_EIO;
		}
		if (seq <= *last_seq) {
			*why = "sequence number does not increase";
			*bad_off = off;
			return KZ_EIO;
		}
		*last_seq = seq;
		(*records)++;
		if (cb && seq >= from) {
			struct kz_reclog_pos pos = { s->base, off };
			*cb_rc = cb(ctx, seq, s->p + off + FRAME_HDR, nx - off - FRAME_HDR, &pos);
			if (*cb_rc)
				return KZ_OK;
		}
		off = nx;
	}
	return KZ_OK;
}

/* ---------- open and recovery ---------- */

static int mkdir_p(const char *dir)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp)
		return KZ_EINVAL;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0700) && errno != EEXIST)
			return KZ_EIO;
		*p = '/';
	}
	return mkdir(tmp, 0700) && errno != EEXIST ? KZ_EIO : KZ_OK;
}

#define WBUF_KEEP (1u << 20)

/* A full disk (or quota) is its own error: the client is told "no space left", not "I/O". */
static int io_err(int e)
{
	return e == ENOSPC || e == EDQUOT ? KZ_ENOSPC : KZ_EIO;
}

static int seg_create(struct kz_reclog *log, uint64_t base, char *why, size_t why_len)
{
	char path[4200];
	seg_path(path, sizeof path, log->dir, base);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	uint8_t h[SEG_HDR];
	seg_header(h, base);
	errno = 0;
	if (fd < 0 || kz_write_all(fd, h, SEG_HDR) || fdatasync(fd) || fsync(log->dirfd)) {
		int e = errno ? errno : EIO;
		snprintf(why, why_len, "cannot create segment %s: %s", path, strerror(e));
		if (fd >= 0)
			close(fd);
		return io_err(e);
	}
	if (log->fd >= 0)
		close(log->fd);
	log->fd = fd;
	log->seg_base = base;
	log->seg_size = SEG_HDR;
	log->seg_records = 0;
	return KZ_OK;
}

int kz_reclog_open(const struct kz_reclog_config *cfg, struct kz_reclog **out, struct kz_reclog_recovery *rec,
		char *why, size_t why_len)
{
	*out = NULL;
	memset(rec, 0, sizeof *rec);
	if (mkdir_p(cfg->dir)) {
		snprintf(why, why_len, "cannot create %s: %s", cfg->dir, strerror(errno));
		return KZ_EIO;
	}
	struct kz_reclog *log = calloc(1, sizeof *log);
	if (!log)
		return KZ_ENOMEM;
	log->cfg = *cfg;
	log->dir = strdup(cfg->dir);
	log->fd = -1;
	log->dirfd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	kz_buf_init(&log->wbuf, 0);
	log->next_seq = 1;
	struct seglist sl;
	int rc = !log->dir || log->dirfd < 0 ? KZ_EIO : list_segments(cfg->dir, &sl);
	if (rc) {
		snprintf(why, why_len, "cannot read %s: %s", cfg->dir, strerror(errno));
		kz_reclog_close(log);
		return rc;
	}
	uint64_t last_seq = 0;
	if (sl.n) {
		/* A roll writes and syncs a new segment's header before any frame: a last segment
		 * shorter than a header was being created when the node stopped. It goes. */
		char path[4200];
		struct stat sb;
		seg_path(path, sizeof path, cfg->dir, sl.base[sl.n - 1]);
		if (stat(path, &sb) == 0 && sb.st_size < SEG_HDR) {
			kz_warn("record log: removing %s: %lld bytes, shorter than a segment header (a "
				"segment being created)", path, (long long)sb.st_size);
			if (unlink(path) == 0)
				sl.n--;
		}
	}
	for (size_t i = 0; i < sl.n && !rc; i++) {
		char path[4200];
		bool last = i + 1 == sl.n;
		struct seg s;
		if ((rc = seg_map(cfg->dir, sl.base[i], &s, path, sizeof path, why, why_len)) != KZ_OK)
			break;
		if (!seg_header_ok(s.p, s.size, sl.base[i])) {
			snprintf(why, why_len, "%s: offset 0: bad segment header", path);
			seg_unmap(&s);
			rc = KZ_EIO;
			break;
		}
		size_t bad = 0;
		const char *what = NULL;
		int cbrc = 0;
		uint64_t records = 0;
		if (seg_walk(&s, SEG_HDR, cfg->max_record_bytes, &last_seq, &records, &bad, &what, NULL,
			     NULL, 0, &cbrc)) {
			uint64_t nseq;
			if (last && !resync(&s, bad, cfg->max_record_bytes, &nseq)) {
				rec->torn_bytes = s.size - bad;
				if (truncate(path, (off_t)bad) != 0) {
					snprintf(why, why_len, "%s: cannot cut the torn end at offset %zu: %s",
						 path, bad, strerror(errno));
					rc = KZ_EIO;
				}
				s.size = bad;
			} else {
				snprintf(why, why_len,
					 "%s: offset %zu: %s; the log is damaged before its end "
					 "(run `kizuna store repair`)", path, bad, what);
				rc = KZ_EIO;
			}
		}
		rec->records += records;
		rec->segments++;
		if (last && !rc) {
			log->seg_base = sl.base[i];
			log->seg_size = s.size;
			log->seg_records = records;
		}
		seg_unmap(&s);
	}
	if (!rc && rec->segments) {
		char path[4200];
		seg_path(path, sizeof path, cfg->dir, log->seg_base);
		log->fd = open(path, O_WRONLY | O_CLOEXEC);
		if (log->fd < 0) {
			snprintf(why, why_len, "%s: cannot open for append: %s", path, strerror(errno));
			rc = KZ_EIO;
		} else if (rec->torn_bytes && fdatasync(log->fd)) {
			rc = KZ_EIO;
		}
	}
	/* Retention may have removed every record before an empty last segment: its base is
	 * still the floor, so that no sequence number is ever used twice. */
	log->next_seq = last_seq + 1;
	if (rec->segments && log->seg_base > log->next_seq)
		log->next_seq = log->seg_base;
	if (!rc && !rec->segments)
		rc = seg_create(log, log->next_seq, why, why_len);
	/* Sequence numbers are never used twice: when the log's tail was cut (a torn write
	 * with fsync interval or never, a disk fault, `store repair`) below what was handed out
	 * before, the next record starts a segment at the recorded floor. */
	uint64_t floor = kz_reclog_floor(cfg->dir);
	if (!rc && floor > log->next_seq) {
		kz_warn("record log: it ends at record %" PRIu64 " but numbers up to %" PRIu64 " were used before "
			"(its tail was cut); new records start at %" PRIu64 " so that none is reused",
			log->next_seq - 1, floor - 1, floor);
		rc = kz_reclog_advance(log, floor, why, why_len);
	}
	free(sl.base);
	if (rc) {
		kz_reclog_close(log);
		return rc;
	}
	log->last_sync_ms = kz_now_mono_ms();
	*out = log;
	return KZ_OK;
}

uint64_t kz_reclog_next_seq(const struct kz_reclog *log) { return log->next_seq; }

#define FLOOR_FILE "seq.floor"

static int flush_wbuf(struct kz_reclog *log, char *why, size_t why_len);
static int sync_now(struct kz_reclog *log, char *why, size_t why_len);

uint64_t kz_reclog_floor(const char *dir)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/" FLOOR_FILE, dir);
	FILE *f = fopen(path, "re");
	unsigned long long v = 0;
	if (f) {
		if (fscanf(f, "%llu", &v) != 1) {
			kz_warn("%s: not a sequence number; ignored", path);
			v = 0;
		}
		fclose(f);
	}
	return v;
}

int kz_reclog_raise_floor(const char *dir, uint64_t next)
{
	if (kz_reclog_floor(dir) >= next)
		return KZ_OK;
	char buf[32];
	int n = snprintf(buf, sizeof buf, "%" PRIu64 "\n", next);
	return kz_file_replace(dir, FLOOR_FILE, buf, (size_t)n, 0600) ? KZ_EIO : KZ_OK;
}

int kz_reclog_advance(struct kz_reclog *log, uint64_t next, char *why, size_t why_len)
{
	if (next <= log->next_seq)
		return KZ_OK;
	int rc = flush_wbuf(log, why, why_len);
	if (!rc && log->dirty)
		rc = sync_now(log, why, why_len);
	if (!rc)
		rc = seg_create(log, next, why, why_len);
	if (!rc)
		log->next_seq = next;
	if (!rc && kz_reclog_raise_floor(log->dir, next)) {
		snprintf(why, why_len, "cannot write %s/" FLOOR_FILE ": %s", log->dir, strerror(errno));
		rc = KZ_EIO;
	}
	return rc;
}

void kz_reclog_close(struct kz_reclog *log)
{
	if (!log)
		return;
	if (log->fd >= 0) {
		if (log->dirty)
			(void)fdatasync(log->fd);
		close(log->fd);
	}
	if (log->dirfd >= 0)
		close(log->dirfd);
	kz_buf_cleanup(&log->wbuf);
	free(log->wbody);
	free(log->dir);
	free(log);
}

/* ---------- append ---------- */


#define IOV_FRAMES 512 /* frames per pwritev: two iovecs each, within IOV_MAX (1024) */

/* Writes the pending frames (headers from wbuf, bodies where the caller has them: no copy
 * of the batch) at the end of the current segment; on failure (a disk that filled up part
 * way) cuts the segment back to its old size, so that no partial frame stays behind and
 * the next write lands where this one should have (positional writes: no file offset to
 * get out of step with the truncation). */
static int flush_wbuf(struct kz_reclog *log, char *why, size_t why_len)
{
	if (log->n_wbody == 0)
		return KZ_OK;
	uint64_t off = log->seg_size;
	struct iovec iov[2 * IOV_FRAMES];
	int rc = 0;
	for (size_t i = 0; i < log->n_wbody && !rc;) {
		int cnt = 0;
		uint64_t bytes = 0;
		for (; i < log->n_wbody && cnt < 2 * IOV_FRAMES; i++) {
			iov[cnt++] = (struct iovec){ log->wbuf.data + log->wbuf.off + i * FRAME_HDR, FRAME_HDR };
			iov[cnt++] = (struct iovec){ (void *)log->wbody[i].p, log->wbody[i].len };
			bytes += FRAME_HDR + log->wbody[i].len;
		}
		rc = kz_pwritev_all(log->fd, iov, cnt, off);
		if (!rc)
			off += bytes;
	}
	log->n_wbody = 0;
	kz_buf_reset(&log->wbuf);
	if (log->wbuf.cap > WBUF_KEEP) /* a flood's batch: do not keep its high-water allocation */
		kz_buf_shrink(&log->wbuf, 0);
	if (rc) {
		int e = errno;
		snprintf(why, why_len, "write to segment %020" PRIu64 ".seg failed: %s", log->seg_base,
			 strerror(e));
		if (ftruncate(log->fd, (off_t)log->seg_size) != 0)
			kz_error("cannot cut a failed write off segment %020" PRIu64 ".seg: %s",
				 log->seg_base, strerror(errno));
		errno = e;
		return io_err(e);
	}
	log->seg_size = off;
	log->dirty = true;
	return KZ_OK;
}

static int sync_now(struct kz_reclog *log, char *why, size_t why_len)
{
	if (fdatasync(log->fd)) {
		int e = errno;
		snprintf(why, why_len, "fdatasync of segment %020" PRIu64 ".seg failed: %s",
			 log->seg_base, strerror(e));
		return io_err(e);
	}
	log->dirty = false;
	log->last_sync_ms = kz_now_mono_ms();
	return KZ_OK;
}

int kz_reclog_append(struct kz_reclog *log, const struct kz_bytes *bodies, size_t n, uint64_t *first_seq,
		  char *why, size_t why_len)
{
	return kz_reclog_append_pos(log, bodies, n, first_seq, NULL, why, why_len);
}

int kz_reclog_append_pos(struct kz_reclog *log, const struct kz_bytes *bodies, size_t n, uint64_t *first_seq,
		      struct kz_reclog_pos *pos, char *why, size_t why_len)
{
	uint64_t seq = log->next_seq, size = log->seg_size, recs = log->seg_records;
	*first_seq = seq;
	for (size_t i = 0; i < n; i++) {
		uint32_t len = bodies[i].len;
		if (len == 0 || len > log->cfg.max_record_bytes) {
			kz_buf_reset(&log->wbuf);
			log->n_wbody = 0;
			snprintf(why, why_len, "record of %u bytes (limit %u)", len, log->cfg.max_record_bytes);
			return KZ_ETOOBIG;
		}
		if (recs > 0 && size + FRAME_HDR + len > log->cfg.segment_bytes) {
			/* Roll: the closed segment is complete and synced before the next begins. */
			int rc = flush_wbuf(log, why, why_len);
			if (!rc)
				rc = sync_now(log, why, why_len);
			if (!rc)
				rc = seg_create(log, seq, why, why_len);
			if (rc) {
				log->next_seq = seq; /* what was flushed before is in the log */
				return rc;
			}
			log->next_seq = seq;
			size = SEG_HDR;
			recs = 0;
		}
		int rc = kz_buf_reserve(&log->wbuf, FRAME_HDR);
		if (!rc && log->n_wbody == log->cap_wbody) {
			size_t nc;
			struct kz_bytes *nb = kz_array_grow(log->wbody, sizeof *nb, log->cap_wbody, (size_t)log->cap_wbody + 1, 1024, SIZE_MAX, &nc);
			if (nb) {
				log->wbody = nb;
				log->cap_wbody = nc;
			} else {
				rc = KZ_ENOMEM;
			}
		}
		if (rc) {
			kz_buf_reset(&log->wbuf);
			log->n_wbody = 0;
			snprintf(why, why_len, "out of memory");
			return rc;
		}
		if (pos)
			pos[i] = (struct kz_reclog_pos){ log->seg_base, size };
		uint8_t *h = kz_buf_tail(&log->wbuf);
		put32(h, len);
		put64(h + 8, seq);
		put32(h + 4, frame_crc(h, bodies[i].p, len));
		log->wbuf.len += FRAME_HDR;
		log->wbody[log->n_wbody++] = bodies[i];
		size += FRAME_HDR + len;
		recs++;
		seq++;
	}
	int rc = flush_wbuf(log, why, why_len);
	if (rc)
		return rc;
	log->seg_records = recs;
	log->next_seq = seq;
	if (log->cfg.fsync == KZ_FSYNC_ALWAYS ||
	    (log->cfg.fsync == KZ_FSYNC_INTERVAL &&
	     kz_now_mono_ms() - log->last_sync_ms >= log->cfg.fsync_interval_ms))
		return sync_now(log, why, why_len);
	return KZ_OK;
}

int kz_reclog_sync_due(struct kz_reclog *log, char *why, size_t why_len)
{
	if (!log->dirty || log->cfg.fsync != KZ_FSYNC_INTERVAL ||
	    kz_now_mono_ms() - log->last_sync_ms < log->cfg.fsync_interval_ms)
		return KZ_OK;
	return sync_now(log, why, why_len);
}

/* ---------- scan ---------- */

int kz_reclog_segments(const char *dir, uint64_t **bases, size_t *n)
{
	struct seglist sl;
	int rc = list_segments(dir, &sl);
	*bases = sl.base;
	*n = sl.n;
	return rc;
}

/* kz_reclog_scan: store_scan.c */

static int end_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	(void)body, (void)n, (void)pos;
	*(uint64_t *)ctx = seq;
	return 0;
}

uint64_t kz_reclog_next_in(const char *dir, uint32_t max_record_bytes)
{
	uint64_t *bases = NULL, last = 0;
	size_t n = 0;
	if (kz_reclog_segments(dir, &bases, &n) || n == 0) {
		free(bases);
		uint64_t floor = kz_reclog_floor(dir);
		return floor > 1 ? floor : 1;
	}
	uint64_t base = bases[n - 1];
	free(bases);
	char why[256];
	(void)kz_reclog_scan(dir, base, NULL, max_record_bytes, end_cb, &last, why, sizeof why);
	uint64_t next = last ? last + 1 : base;
	uint64_t floor = kz_reclog_floor(dir);
	return floor > next ? floor : next;
}

/* ---------- rewrite (retention) ---------- */

int kz_reclog_rewrite(const char *dir, uint64_t base, uint32_t max, kz_reclog_keep_fn keep, void *ctx,
		   uint64_t *kept, char *why, size_t why_len)
{
	*kept = 0;
	char path[4200], tmp[4300];
	struct seg s;
	int rc = seg_map(dir, base, &s, path, sizeof path, why, why_len);
	if (rc)
		return rc;
	if (!seg_header_ok(s.p, s.size, base)) {
		snprintf(why, why_len, "%s: offset 0: bad segment header", path);
		seg_unmap(&s);
		return KZ_EIO;
	}
	struct kz_buf out;
	kz_buf_init(&out, 0);
	uint8_t h[SEG_HDR];
	seg_header(h, base);
	rc = kz_buf_append(&out, h, SEG_HDR);
	size_t off = SEG_HDR;
	uint64_t last = 0;
	while (!rc && off < s.size) {
		size_t nx;
		uint64_t seq;
		const char *what;
		if (!frame_ok(&s, off, max, &nx, &seq, &what) || seq <= last) {
			snprintf(why, why_len, "%s: offset %zu: %s", path, off,
				 seq <= last ? "sequence number does not increase" : what);
			rc = KZ_EIO;
			break;
		}
		last = seq;
		if (keep(ctx, seq, s.p + off + FRAME_HDR, nx - off - FRAME_HDR)) {
			rc = kz_buf_append(&out, s.p + off, nx - off);
			(*kept)++;
		}
		off = nx;
	}
	seg_unmap(&s);
	int dfd = rc ? -1 : open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!rc && *kept == 0) {
		if (unlink(path) || fsync(dfd)) {
			snprintf(why, why_len, "cannot remove %s: %s", path, strerror(errno));
			rc = KZ_EIO;
		}
	} else if (!rc) {
		snprintf(tmp, sizeof tmp, "%s.rewrite", path);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || kz_write_all(fd, kz_buf_head(&out), out.len) || fdatasync(fd) ||
		    rename(tmp, path) || fsync(dfd)) {
			snprintf(why, why_len, "cannot rewrite %s: %s", path, strerror(errno));
			unlink(tmp);
			rc = KZ_EIO;
		}
		if (fd >= 0)
			close(fd);
	}
	if (dfd >= 0)
		close(dfd);
	kz_buf_cleanup(&out);
	return rc;
}

/* ---------- random access ---------- */

/* ---------- repair ---------- */

int kz_reclog_repair(const char *dir, uint32_t max, void (*report)(void *ctx, const char *line),
		  void *ctx, char *why, size_t why_len)
{
	struct seglist sl;
	int rc = list_segments(dir, &sl);
	if (rc) {
		snprintf(why, why_len, "cannot read %s: %s", dir, strerror(errno));
		return rc;
	}
	char qdir[4200], line[8192];
	snprintf(qdir, sizeof qdir, "%s/quarantine", dir);
	unsigned ranges = 0;
	uint64_t prev_seq = 0;
	for (size_t i = 0; i < sl.n && !rc; i++) {
		char path[4200];
		struct seg s;
		if ((rc = seg_map(dir, sl.base[i], &s, path, sizeof path, why, why_len)) != KZ_OK)
			break;
		if (!seg_header_ok(s.p, s.size, sl.base[i])) {
			snprintf(line, sizeof line, "%s: bad header: whole segment (%zu bytes) quarantined",
				 path, s.size);
			report(ctx, line);
			seg_unmap(&s);
			if (mkdir_p(qdir) == KZ_OK) {
				char q[4300];
				snprintf(q, sizeof q, "%s/%020" PRIu64 ".seg", qdir, sl.base[i]);
				if (rename(path, q))
					rc = KZ_EIO;
			} else {
				rc = KZ_EIO;
			}
			ranges++;
			continue;
		}
		/* Rebuild the segment from its valid frames; damaged ranges go to quarantine. */
		struct kz_buf keep, lost;
		kz_buf_init(&keep, 0);
		kz_buf_init(&lost, 0);
		uint8_t h[SEG_HDR];
		seg_header(h, sl.base[i]);
		rc = kz_buf_append(&keep, h, SEG_HDR);
		size_t off = SEG_HDR;
		bool damaged = false;
		while (!rc && off < s.size) {
			size_t nx;
			uint64_t seq;
			const char *what;
			if (frame_ok(&s, off, max, &nx, &seq, &what) && seq > prev_seq) {
				rc = kz_buf_append(&keep, s.p + off, nx - off);
				prev_seq = seq;
				off = nx;
				continue;
			}
			uint64_t next_seq = 0;
			size_t end = resync(&s, off, max, &next_seq);
			while (end && next_seq <= prev_seq) /* skip stale frames too */
				end = resync(&s, end, max, &next_seq);
			if (!end)
				end = s.size;
			if (end == s.size && i + 1 == sl.n && !damaged && lost.len == 0) {
				snprintf(line, sizeof line, "%s: offsets %zu-%zu (%zu bytes): torn end, "
					 "unacknowledged; quarantined", path, off, end, end - off);
			} else if (end < s.size) {
				snprintf(line, sizeof line, "%s: offsets %zu-%zu (%zu bytes): %s; %" PRIu64
					 " records lost (seq %" PRIu64 "-%" PRIu64 ")", path, off, end,
					 end - off, what, next_seq - prev_seq - 1, prev_seq + 1, next_seq - 1);
			} else {
				snprintf(line, sizeof line, "%s: offsets %zu-%zu (%zu bytes): %s; records "
					 "after seq %" PRIu64 " in this segment lost (count unknown)",
					 path, off, end, end - off, what, prev_seq);
			}
			report(ctx, line);
			rc = kz_buf_append(&lost, s.p + off, end - off);
			damaged = true;
			ranges++;
			off = end;
		}
		seg_unmap(&s);
		if (!rc && damaged) {
			char tmp[4300], q[4300];
			snprintf(tmp, sizeof tmp, "%s.repair", path);
			snprintf(q, sizeof q, "%s/%020" PRIu64 ".seg.%u.bad", qdir, sl.base[i], ranges);
			int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			int qfd = mkdir_p(qdir) ? -1 : open(q, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (fd < 0 || qfd < 0 || kz_write_all(qfd, kz_buf_head(&lost), lost.len) || fsync(qfd) ||
			    kz_write_all(fd, kz_buf_head(&keep), keep.len) || fsync(fd) || rename(tmp, path)) {
				snprintf(why, why_len, "cannot rewrite %s: %s", path, strerror(errno));
				rc = KZ_EIO;
			}
			if (fd >= 0)
				close(fd);
			if (qfd >= 0)
				close(qfd);
		}
		kz_buf_cleanup(&keep);
		kz_buf_cleanup(&lost);
	}
	free(sl.base);
	if (!rc) {
		if (ranges)
			snprintf(line, sizeof line, "%u damaged range(s) quarantined in %s", ranges, qdir);
		else
			snprintf(line, sizeof line, "no damage found");
		report(ctx, line);
	}
	return rc;
}
