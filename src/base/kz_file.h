/* kz_file.h — small files replaced atomically and durably (state the node keeps: the CA's
 * lists, the highest CRL and policy sequence seen). */
#ifndef KZ_FILE_H
#define KZ_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* Writes data to dir/name.tmp, fsyncs it, renames it over dir/name and fsyncs dir: after a
 * crash the file is the old or the new one, never a mix. 0, or KZ_EINVAL (path too long) /
 * KZ_EIO (errno says why); on error dir/name is unchanged. */
int kz_file_replace(const char *dir, const char *name, const void *data, size_t len, mode_t mode);

#endif
