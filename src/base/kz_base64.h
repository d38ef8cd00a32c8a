/* kz_base64.h — RFC 4648 base64 (standard alphabet, padded). */
#ifndef KZ_BASE64_H
#define KZ_BASE64_H
#include <stddef.h>
#include <stdint.h>
/* Writes the encoding of p[0..n) and a NUL to out, which must hold 4 * ((n + 2) / 3) + 1
 * bytes; returns the length. */
size_t kz_base64(const uint8_t *p, size_t n, char *out);
#endif
