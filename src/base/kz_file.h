/* kz_file.h — whole reads and writes, and small files replaced atomically and durably (state
 * the node keeps: the CA's lists, the highest CRL and policy sequence seen). */
#ifndef KZ_FILE_H
#define KZ_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* write(2) until all n bytes are written (EINTR and short writes continue); 0, or -1 with
 * errno (ENOSPC for a write that took nothing). */
int kz_write_all(int fd, const void *data, size_t n);
struct iovec;
/* pwritev(2) of all cnt buffers at off (short writes continue where they stopped; iov is
 * advanced in place); 0, or -1 with errno. */
int kz_pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off);
/* pread(2) of exactly n bytes at off; 0, or -1 (errno, or the file ends first). */
int kz_pread_all(int fd, void *data, size_t n, uint64_t off);
/* pread(2) of up to n bytes at off, fewer only where the file ends (*got); 0, or -1 (errno). */
int kz_pread_upto(int fd, void *data, size_t n, uint64_t off, size_t *got);

/* Reads up to cap - 1 bytes of a small file (a /proc entry, a saved position) into buf and
 * ends them with a NUL: their count, or -1 when it cannot be opened or read. */
ssize_t kz_file_read_small(const char *path, char *buf, size_t cap);

/* A whole file of at most max bytes, malloc'd and ended with a NUL (*len: its bytes); NULL when
 * it cannot be opened or read, or is larger (errno EFBIG). */
char *kz_file_read_whole(const char *path, size_t max, size_t *len);

/* Writes data to dir/name.tmp, fsyncs it, renames it over dir/name and fsyncs dir: after a
 * crash the file is the old or the new one, never a mix. 0, or KZ_EINVAL (path too long) /
 * KZ_EIO (errno says why); on error dir/name is unchanged. */
int kz_file_replace(const char *dir, const char *name, const void *data, size_t len, mode_t mode);

#endif
