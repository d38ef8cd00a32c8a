/* detect_load.c — indicators and warning lists from files (plain or gzip): a STIX bundle, a
 * JSON array of objects, or one JSON object per line; a Zeek intel file (#fields header,
 * tab-separated); a MISP warning list (list.json). */
#include "services/detect/detect_internal.h"
#include "base/kz_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* The whole file (gunzipped when it is gzip), NUL terminated; NULL with why. Capped. */
static char *slurp(const char *path, size_t *len, size_t cap, char *why, size_t why_len)
{
	gzFile f = gzopen(path, "rb");
	if (!f) {
		snprintf(why, why_len, "%s: cannot be read", path);
		return NULL;
	}
	size_t n = 0, c = 1 << 16;
	char *b = malloc(c);
	for (;;) {
		if (!b) {
			snprintf(why, why_len, "%s: out of memory", path);
			gzclose(f);
			return NULL;
		}
		if (n + 1 >= c) {
			if (c >= cap) {
				snprintf(why, why_len, "%s: larger than %zu bytes", path, cap);
				free(b);
				gzclose(f);
				return NULL;
			}
			char *nb = realloc(b, c * 2);
			if (!nb)
				free(b);
			b = nb, c *= 2;
			continue;
		}
		int got = gzread(f, b + n, (unsigned)(c - 1 - n < (1u << 30) ? c - 1 - n : (1u << 30)));
		if (got < 0) {
			snprintf(why, why_len, "%s: a read error (a damaged gzip file?)", path);
			free(b);
			gzclose(f);
			return NULL;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	gzclose(f);
	b[n] = 0;
	*len = n;
	return b;
}

#define FILE_CAP ((size_t)4 << 30)

static void add_object(struct detect_index *x, const struct kz_json *o, const char *label, const char *source)
{
	const char *type = kz_json_get_str(o, "type"), *why;
	if (type && !strcmp(type, "indicator"))
		(void)detect_add_stix(x, o, label, source, &why);
}

static int load_json(struct detect_index *x, const char *text, size_t len, const char *label, const char *source,
		     char *why, size_t why_len)
{
	struct kz_json_doc d = { 0 };
	int rc = 0;
	if (kz_json_parse(&d, text, len) == 0) { /* one document: a bundle, an array or one object */
		const struct kz_json *r = kz_json_root(&d);
		const struct kz_json *objs = r->type == KZ_JSON_ARRAY ? r : kz_json_get(r, "objects");
		if (objs && objs->type == KZ_JSON_ARRAY) {
			KZ_JSON_FOR(m, objs)
				add_object(x, m, label, source);
		} else {
			add_object(x, r, label, source);
		}
		kz_json_free(&d);
		return 0;
	}
	/* JSON lines */
	unsigned line = 0;
	for (const char *p = text, *end = text + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		line++;
		if (n && !(n == 1 && p[0] == '\r')) {
			if (kz_json_parse(&d, p, n)) {
				snprintf(why, why_len, "%s: line %u: not JSON (%s)", source, line, d.err);
				rc = -1;
				break;
			}
			add_object(x, kz_json_root(&d), label, source);
		}
		p += n + 1;
	}
	kz_json_free(&d);
	return rc;
}

static int load_zeek(struct detect_index *x, char *text, const char *label, const char *source, char *why,
		     size_t why_len)
{
	const char *names[64];
	size_t n_names = 0;
	unsigned line = 0;
	for (char *p = text, *nl; p && *p; p = nl) {
		nl = strchr(p, '\n');
		if (nl)
			*nl++ = 0;
		line++;
		size_t n = strlen(p);
		if (n && p[n - 1] == '\r')
			p[--n] = 0;
		if (!strncmp(p, "#fields\t", 8)) {
			n_names = 0;
			for (char *f = p + 8, *t; f && n_names < 64; f = t) {
				t = strchr(f, '\t');
				if (t)
					*t++ = 0;
				names[n_names++] = f;
			}
			continue;
		}
		if (!n || p[0] == '#')
			continue;
		if (!n_names) {
			snprintf(why, why_len, "%s: line %u: data before the #fields header", source, line);
			return -1;
		}
		const char *fields[64];
		size_t nf = 0;
		for (char *f = p, *t; f && nf < n_names; f = t) {
			t = strchr(f, '\t');
			if (t)
				*t++ = 0;
			fields[nf++] = f;
		}
		const char *w;
		(void)detect_add_zeek_intel(x, fields, names, nf, label, source, line, &w);
	}
	return 0;
}

int detect_load_text(struct detect_index *x, char *text, size_t len, const char *label, const char *source,
		     char *why, size_t why_len)
{
	size_t i = 0;
	while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t'))
		i++;
	int rc = i < len && (text[i] == '{' || text[i] == '[') ? load_json(x, text, len, label, source, why, why_len)
							       : load_zeek(x, text, label, source, why, why_len);
	detect_index_compact(x);
	return rc;
}

int detect_load_file(struct detect_index *x, const char *path, const char *label, char *why, size_t why_len)
{
	size_t len;
	char *text = slurp(path, &len, FILE_CAP, why, why_len);
	if (!text)
		return -1;
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	int rc = detect_load_text(x, text, len, label, base, why, why_len);
	free(text);
	return rc;
}

int detect_load_warninglist(struct detect_index *x, const char *path, char *why, size_t why_len)
{
	size_t len;
	char *text = slurp(path, &len, (size_t)256 << 20, why, why_len);
	if (!text)
		return -1;
	int rc = detect_load_warninglist_text(x, text, len, path, why, why_len);
	free(text);
	return rc;
}

int detect_load_warninglist_text(struct detect_index *x, const char *text, size_t len, const char *path, char *why,
				 size_t why_len)
{
	struct kz_json_doc d = { 0 };
	int rc = -1;
	if (kz_json_parse(&d, text, len)) {
		snprintf(why, why_len, "%s: not JSON (%s)", path, d.err);
		goto out;
	}
	const struct kz_json *r = kz_json_root(&d), *list = kz_json_get(r, "list");
	const char *type = kz_json_get_str(r, "type"), *name = kz_json_get_str(r, "name");
	if (!list || list->type != KZ_JSON_ARRAY || !type) {
		snprintf(why, why_len, "%s: not a MISP warning list (list and type)", path);
		goto out;
	}
	if (strcmp(type, "string") && strcmp(type, "hostname") && strcmp(type, "cidr") && strcmp(type, "substring")) {
		snprintf(why, why_len, "%s: warning list type %s is not one of string, hostname, cidr", path, type);
		goto out;
	}
	char lname[200];
	snprintf(lname, sizeof lname, "%s", name ? name : path);
	KZ_JSON_FOR(m, list) {
		const char *v = kz_json_str(m);
		if (v && detect_warn_add(x, lname, strcmp(type, "cidr") ? "string" : "cidr", v)) {
			snprintf(why, why_len, "%s: out of memory", path);
			goto out;
		}
	}
	rc = 0;
out:
	kz_json_free(&d);
	return rc;
}
