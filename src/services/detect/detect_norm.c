/* detect_norm.c — observables in one canonical form each, so that an indicator and a log
 * field that mean the same thing compare equal: addresses as 16 bytes, names in lower case,
 * URLs normalised (RFC 3986 §6.2.2: case, percent-encoding and path of the syntax-based
 * normalisation; §6.2.3: the scheme's default port and an empty path). */
#include "services/detect/detect.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <idn2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A plain dotted quad (what logs mostly hold), as inet_pton takes it: four decimal octets of
 * at most 255, no leading zero. 0; -1 when it is not one (the caller then tries the rest). */
static int quad(const char *s, size_t n, uint8_t out[4])
{
	const char *e = s + n;
	for (int i = 0; i < 4; i++) {
		if (s == e || *s < '0' || *s > '9')
			return -1;
		unsigned v = 0, d = 0;
		while (s < e && *s >= '0' && *s <= '9' && d < 4)
			v = v * 10 + (unsigned)(*s++ - '0'), d++;
		if (v > 255 || d > 3 || (d > 1 && s[-(int)d] == '0'))
			return -1;
		out[i] = (uint8_t)v;
		if (i < 3 && (s == e || *s++ != '.'))
			return -1;
	}
	return s == e ? 0 : -1;
}

int detect_ip_parse(const char *s, size_t n, uint8_t out[16], unsigned *prefix)
{
	if (n >= 7 && n <= 15 && !quad(s, n, out + 12)) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		*prefix = 128;
		return 0;
	}
	char buf[64];
	while (n && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 0 || n >= sizeof buf)
		return -1;
	memcpy(buf, s, n);
	buf[n] = 0;
	char *slash = strchr(buf, '/');
	long pl = -1;
	if (slash) {
		char *end;
		*slash = 0;
		if (!isdigit((unsigned char)slash[1]))
			return -1;
		pl = strtol(slash + 1, &end, 10);
		if (*end || pl < 0)
			return -1;
	}
	struct in_addr a4;
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		if (pl > 32)
			return -1;
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a4, 4);
		*prefix = pl < 0 ? 128 : 96 + (unsigned)pl;
	} else if (inet_pton(AF_INET6, buf, out) == 1) {
		if (pl > 128)
			return -1;
		*prefix = pl < 0 ? 128 : (unsigned)pl;
	} else {
		return -1;
	}
	for (unsigned i = *prefix; i < 128; i++) /* the host bits of a network: zero */
		out[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
	return 0;
}

/* ASCII names: lower case, labels checked. */
static int ascii_name(const char *s, size_t n, char *out, size_t cap, size_t *len)
{
	if (n && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253 || n >= cap)
		return -1;
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return -1;
		} else {
			return -1; /* a space, a port, a slash... */
		}
		out[i] = (char)tolower(c);
	}
	if (label == 0)
		return -1;
	out[n] = 0;
	*len = n;
	return 0;
}

int detect_domain_norm(const char *s, size_t n, char *out, size_t cap, size_t *len)
{
	while (n && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	bool ascii = true;
	for (size_t i = 0; i < n && ascii; i++)
		ascii = (unsigned char)s[i] < 0x80;
	if (ascii)
		return ascii_name(s, n, out, cap, len);
	/* an internationalised name: its A-label form (IDNA 2008, RFC 5891, with UTS #46's
	 * mapping, as browsers and resolvers send it), so that "bücher.example" and
	 * "xn--bcher-kva.example" are one name */
	char in[256], *a = NULL;
	if (n >= sizeof in)
		return -1;
	memcpy(in, s, n);
	in[n] = 0;
	if (idn2_to_ascii_8z(in, &a, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) != IDN2_OK) {
		idn2_free(a);
		return -1;
	}
	int rc = ascii_name(a, strlen(a), out, cap, len);
	idn2_free(a);
	return rc;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

int detect_url_norm(const char *s, size_t n, char *out, size_t cap, size_t *len)
{
	while (n && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		n--;
	size_t k = 0, i = 0;
#define PUT(c)                        \
	do {                              \
		if (k + 1 >= cap)             \
			return -1;                \
		out[k++] = (char)(c);         \
	} while (0)
	const char *sep = NULL;
	for (size_t j = 0; j + 2 < n; j++) {
		if (s[j] == ':' && s[j + 1] == '/' && s[j + 2] == '/') {
			sep = s + j;
			break;
		}
		if (!isalnum((unsigned char)s[j]) && s[j] != '+' && s[j] != '-' && s[j] != '.')
			break;
	}
	if (n == 0)
		return -1;
	size_t scheme_len = 4;
	if (sep) {
		scheme_len = (size_t)(sep - s);
		if (!scheme_len)
			return -1;
		for (; i < scheme_len; i++)
			PUT(tolower((unsigned char)s[i]));
		i += 3;
	} else {
		for (const char *h = "http"; *h; h++)
			PUT(*h);
	}
	PUT(':');
	PUT('/');
	PUT('/');
	/* authority: to the first / ? # */
	size_t a0 = i;
	while (i < n && s[i] != '/' && s[i] != '?' && s[i] != '#')
		i++;
	size_t a1 = i;
	if (a1 == a0)
		return -1;
	const char *at = memchr(s + a0, '@', a1 - a0);
	size_t h0 = at ? (size_t)(at - s) + 1 : a0;
	for (size_t j = a0; j < h0; j++) /* userinfo as it is */
		PUT(s[j]);
	size_t h1 = a1; /* the port, unless inside [v6] */
	for (size_t j = a1; j > h0; j--) {
		if (s[j - 1] == ']')
			break;
		if (s[j - 1] == ':') {
			h1 = j - 1;
			break;
		}
	}
	for (size_t j = h0; j < h1; j++)
		PUT(tolower((unsigned char)s[j]));
	if (h1 < a1) {
		const char *port = s + h1 + 1;
		size_t pl = a1 - h1 - 1;
		bool dflt = (scheme_len == 4 && !strncmp(out, "http", 4) && pl == 2 && !memcmp(port, "80", 2)) ||
			    (scheme_len == 5 && !strncmp(out, "https", 5) && pl == 3 && !memcmp(port, "443", 3)) ||
			    pl == 0;
		if (!dflt) {
			PUT(':');
			for (size_t j = 0; j < pl; j++)
				PUT(port[j]);
		}
	}
	if (i >= n || s[i] != '/')
		PUT('/');
	for (; i < n && s[i] != '#'; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			unsigned char d = (unsigned char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			if (unreserved(d)) {
				PUT(d);
			} else {
				PUT('%');
				PUT(toupper((unsigned char)s[i + 1]));
				PUT(toupper((unsigned char)s[i + 2]));
			}
			i += 2;
		} else if (c <= ' ' || c >= 0x7f) {
			return -1;
		} else {
			PUT(c);
		}
	}
#undef PUT
	out[k] = 0;
	*len = k;
	return 0;
}
