/* kz_hex.h — lower-case hexadecimal, as the audit log, signature files and token hashes
 * write it. */
#ifndef KZ_HEX_H
#define KZ_HEX_H
#include <stddef.h>
/* Writes 2n hex digits of p[0..n) and a NUL to out (2n + 1 bytes). */
void kz_hex(const void *p, size_t n, char *out);
/* Reads exactly n bytes from the first 2n characters of s (lower-case digits only; s must
 * hold at least 2n characters). 0, or -1 on any other character. */
int kz_unhex(const char *s, void *out, size_t n);
/* The value of one hex digit (either case), -1 for anything else. */
int kz_hexval(char c);
#endif
