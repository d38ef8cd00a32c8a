/* kz_file.c — small files replaced atomically and durably. */
#include "base/kz_file.h"
#include "base/kz_err.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

int kz_write_all(int fd, const void *data, size_t n)
{
	const char *p = data;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = ENOSPC;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int kz_pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off)
{
	int k = 0;
	while (k < cnt) {
		ssize_t w = pwritev(fd, iov + k, cnt - k, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = ENOSPC;
			return -1;
		}
		off += (uint64_t)w;
		while (k < cnt && (size_t)w >= iov[k].iov_len)
			w -= (ssize_t)iov[k++].iov_len;
		if (k < cnt && w) {
			iov[k].iov_base = (char *)iov[k].iov_base + w;
			iov[k].iov_len -= (size_t)w;
		}
	}
	return 0;
}

int kz_pread_upto(int fd, void *data, size_t n, uint64_t off, size_t *got)
{
	char *p = data;
	*got = 0;
	while (*got < n) {
		ssize_t k = pread(fd, p + *got, n - *got, (off_t)(off + *got));
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -1;
		if (k == 0)
			break;
		*got += (size_t)k;
	}
	return 0;
}

int kz_pread_all(int fd, void *data, size_t n, uint64_t off)
{
	size_t got;
	if (kz_pread_upto(fd, data, n, off, &got))
		return -1;
	return got == n ? 0 : -1;
}

int kz_file_replace(const char *dir, const char *name, const void *data, size_t len, mode_t mode)
{
	char path[1200], tmp[1220];
	int k = snprintf(path, sizeof path, "%s/%s", dir, name);
	if (k < 0 || (size_t)k >= sizeof path)
		return KZ_EINVAL;
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return KZ_EIO;
	if (kz_write_all(fd, data, len)) {
		close(fd);
		unlink(tmp);
		return KZ_EIO;
	}
	if (fsync(fd) || close(fd) || rename(tmp, path)) {
		unlink(tmp);
		return KZ_EIO;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return KZ_OK;
}

char *kz_file_read_whole(const char *path, size_t max, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	char *p = NULL;
	size_t got = 0;
	bool ok = !fstat(fd, &st) && st.st_size >= 0;
	if (ok && (uint64_t)st.st_size > max) {
		errno = EFBIG;
		ok = false;
	}
	if (ok && (p = malloc((size_t)st.st_size + 1)) &&
	    (kz_pread_upto(fd, p, (size_t)st.st_size, 0, &got) || got != (size_t)st.st_size)) {
		free(p);
		p = NULL;
	}
	close(fd);
	if (p) {
		p[got] = 0;
		*len = got;
	}
	return p;
}

ssize_t kz_file_read_small(const char *path, char *buf, size_t cap)
{
	if (!cap)
		return -1;
	buf[0] = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t got = 0;
	int rc = kz_pread_upto(fd, buf, cap - 1, 0, &got);
	close(fd);
	if (rc)
		return -1;
	buf[got] = 0;
	return (ssize_t)got;
}
