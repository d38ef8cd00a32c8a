/* kz_hex.c — see kz_hex.h. */
#include "base/kz_hex.h"

#include <stdint.h>

void kz_hex(const void *p, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = 0;
}

int kz_unhex(const char *s, void *out, size_t n)
{
	uint8_t *o = out;
	for (size_t i = 0; i < 2 * n; i++) {
		char c = s[i];
		int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (v < 0)
			return -1;
		o[i / 2] = (uint8_t)(i % 2 ? o[i / 2] | v : v << 4);
	}
	return 0;
}

int kz_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
