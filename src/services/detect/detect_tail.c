/* detect_tail.c — following a log file as a sensor writes it (tail -F): each poll reads the
 * lines appended since the last one. Rotation, both kinds:
 *
 *   renamed (logrotate's default, Zeek's): the path now names another file (its inode
 *     differs): the rest of the old file is read first, then the new one from its start;
 *   truncated (copytruncate): the file is shorter than what was read: read from its start.
 *
 * A line is passed only once it ends with a newline; a partial last line waits for the
 * next poll (up to DETECT_TAIL_MAX_LINE bytes, then it is passed as it is). */
#include "services/detect/detect.h"
#include "base/kz_buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DETECT_TAIL_MAX_LINE (1u << 20)

struct detect_tail {
	char *path;
	int fd;
	dev_t dev;
	ino_t ino;
	off_t off;
	struct kz_buf part; /* a line not ended yet */
	uint64_t rotations;
};

static void reopen(struct detect_tail *t, bool from_end)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = open(t->path, O_RDONLY | O_CLOEXEC);
	t->off = 0;
	struct stat st;
	if (t->fd >= 0 && fstat(t->fd, &st) == 0) {
		t->dev = st.st_dev;
		t->ino = st.st_ino;
		if (from_end)
			t->off = st.st_size;
	}
}

struct detect_tail *detect_tail_open(const char *path, bool from_start)
{
	struct detect_tail *t = calloc(1, sizeof *t);
	if (!t || !(t->path = strdup(path))) {
		free(t);
		return NULL;
	}
	t->fd = -1;
	kz_buf_init(&t->part, 0);
	reopen(t, !from_start);
	return t;
}

void detect_tail_close(struct detect_tail *t)
{
	if (!t)
		return;
	if (t->fd >= 0)
		close(t->fd);
	kz_buf_cleanup(&t->part);
	free(t->path);
	free(t);
}

uint64_t detect_tail_rotations(const struct detect_tail *t)
{
	return t->rotations;
}

/* Reads the open file from t->off to its end, passing each complete line. */
static int drain(struct detect_tail *t, detect_line_fn fn, void *ctx)
{
	char buf[65536];
	int lines = 0;
	for (;;) {
		ssize_t n = pread(t->fd, buf, sizeof buf, t->off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -1 : lines;
		t->off += n;
		const char *p = buf, *end = buf + n;
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
			if (kz_buf_append(&t->part, p, k))
				kz_buf_reset(&t->part);
			if (nl || t->part.len >= DETECT_TAIL_MAX_LINE) {
				fn(ctx, (const char *)kz_buf_head(&t->part), t->part.len);
				kz_buf_reset(&t->part);
				lines++;
			}
			p += k + (nl != NULL);
		}
	}
}

int detect_tail_poll(struct detect_tail *t, detect_line_fn fn, void *ctx)
{
	int lines = 0;
	struct stat now, cur;
	bool moved = stat(t->path, &now) == 0 && (t->fd < 0 || now.st_ino != t->ino || now.st_dev != t->dev);
	if (t->fd >= 0) {
		if (fstat(t->fd, &cur) == 0 && cur.st_size < t->off) { /* truncated in place */
			t->off = 0;
			kz_buf_reset(&t->part);
			t->rotations++;
		}
		int k = drain(t, fn, ctx); /* the rest of the file, renamed or not */
		if (k > 0)
			lines += k;
	}
	if (moved) { /* a new file under the path: from its start */
		if (t->fd >= 0)
			t->rotations++;
		if (t->part.len) { /* the old file's last line, never ended */
			fn(ctx, (const char *)kz_buf_head(&t->part), t->part.len);
			kz_buf_reset(&t->part);
			lines++;
		}
		reopen(t, false);
		if (t->fd >= 0) {
			int k = drain(t, fn, ctx);
			if (k > 0)
				lines += k;
		}
	}
	return lines;
}
