/* detect_events.c — sensor log lines into observables (docs/DETECTION.md "Events"):
 *
 *   Zeek TSV     fields by the #fields header, split on #separator, sets and vectors on
 *                #set_separator; "-" (unset) and "(empty)" carry nothing;
 *   Zeek JSON    one object per line, the same field names;
 *   Suricata EVE one object per line with event_type: nested members named by their path
 *                (dns.rrname, tls.sni, fileinfo.sha256, ...);
 *   syslog       RFC 5424 or RFC 3164: the timestamp from the header, and every token of the
 *                message that reads as an address, a URL, an e-mail address, a hash or a
 *                domain name.
 *
 * Which field is which observable is one table (field_kind). http's host and uri (Zeek) or
 * http.hostname and http.url (EVE) also make a URL. A line that does not parse is counted
 * and skipped; nothing is fatal. */
#include "services/detect/detect_internal.h"
#include "base/kz_err.h"
#include "base/kz_hex.h"
#include "base/kz_json.h"
#include "base/kz_time.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OBS 128
#define MAX_FIELDS 128
#define AUTO 100 /* an address when it parses as one, else a domain name */

/* What a field is, found once per column (Zeek TSV: at its #fields header) or per member
 * (JSON): the observable it holds, and the fields read for the event itself. */
enum { SP_NONE, SP_TS, SP_HOST, SP_URI };
struct col {
	uint8_t kind, role, special;
	const char *stable; /* the field's name, living as long as the process (the table's) */
};

struct detect_reader {
	enum detect_format fmt;
	detect_event_fn fn;
	void *ctx;
	char sep, set_sep;
	char *names[MAX_FIELDS];
	struct col cols[MAX_FIELDS];
	size_t n_names;
	struct kz_buf line, scratch;
	struct kz_json_doc doc;
	struct detect_obs obs[MAX_OBS];
	size_t n_obs;
	const char *host, *uri;
	size_t host_len, uri_len;
	int64_t ts;
	struct detect_reader_stats st;
};

struct detect_reader *detect_reader_new(enum detect_format f, detect_event_fn fn, void *ctx)
{
	struct detect_reader *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->fmt = f;
	r->fn = fn;
	r->ctx = ctx;
	r->sep = '\t';
	r->set_sep = ',';
	kz_buf_init(&r->line, 0);
	kz_buf_init(&r->scratch, 0);
	return r;
}

void detect_reader_free(struct detect_reader *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_names; i++)
		free(r->names[i]);
	kz_buf_cleanup(&r->line);
	kz_buf_cleanup(&r->scratch);
	kz_json_free(&r->doc);
	free(r);
}

void detect_reader_stats(const struct detect_reader *r, struct detect_reader_stats *st)
{
	*st = r->st;
}

static const struct fmap {
	const char *name;
	int kind, role;
} fmap[] = { /* sorted by name (strcmp): looked up by bisection */
	{ "answers", AUTO, DETECT_ANY },	       { "assigned_addr", DETECT_IP, DETECT_ANY },
	{ "cert_chain_fps", DETECT_CERT_SHA256, DETECT_ANY }, { "dest_ip", DETECT_IP, DETECT_DST },
	{ "dns.answers.rdata", AUTO, DETECT_ANY },     { "dns.queries.rrname", DETECT_DOMAIN, DETECT_ANY },
	{ "dns.rdata", AUTO, DETECT_ANY },	       { "dns.rrname", DETECT_DOMAIN, DETECT_ANY },
	{ "dst", DETECT_IP, DETECT_DST },	       { "fileinfo.md5", DETECT_MD5, DETECT_ANY },
	{ "fileinfo.sha1", DETECT_SHA1, DETECT_ANY },  { "fileinfo.sha256", DETECT_SHA256, DETECT_ANY },
	{ "fingerprint", DETECT_CERT_SHA256, DETECT_ANY }, { "host", AUTO, DETECT_DST },
	{ "http.hostname", AUTO, DETECT_DST },	       { "id.orig_h", DETECT_IP, DETECT_SRC },
	{ "id.resp_h", DETECT_IP, DETECT_DST },	       { "mailfrom", DETECT_EMAIL, DETECT_ANY },
	{ "md5", DETECT_MD5, DETECT_ANY },	       { "query", DETECT_DOMAIN, DETECT_ANY },
	{ "rcptto", DETECT_EMAIL, DETECT_ANY },	       { "rx_hosts", DETECT_IP, DETECT_ANY },
	{ "san.dns", DETECT_DOMAIN, DETECT_ANY },      { "san.ip", DETECT_IP, DETECT_ANY },
	{ "server_name", DETECT_DOMAIN, DETECT_ANY },  { "sha1", DETECT_SHA1, DETECT_ANY },
	{ "sha256", DETECT_SHA256, DETECT_ANY },       { "smtp.mail_from", DETECT_EMAIL, DETECT_ANY },
	{ "smtp.rcpt_to", DETECT_EMAIL, DETECT_ANY },  { "src", DETECT_IP, DETECT_SRC },
	{ "src_ip", DETECT_IP, DETECT_SRC },	       { "tls.fingerprint", DETECT_CERT_SHA1, DETECT_ANY },
	{ "tls.sni", DETECT_DOMAIN, DETECT_ANY },      { "tx_hosts", DETECT_IP, DETECT_ANY },
};

static int fmap_cmp(const void *k, const void *e)
{
	return strcmp(k, ((const struct fmap *)e)->name);
}

/* What the field of this name is. */
static struct col classify(const char *name)
{
	struct col c = { 0 };
	if (!strcmp(name, "ts") || !strcmp(name, "timestamp"))
		c.special = SP_TS;
	else if (!strcmp(name, "host") || !strcmp(name, "http.hostname"))
		c.special = SP_HOST;
	else if (!strcmp(name, "uri") || !strcmp(name, "http.url"))
		c.special = SP_URI;
	const struct fmap *m = bsearch(name, fmap, sizeof fmap / sizeof *fmap, sizeof *fmap, fmap_cmp);
	if (m) {
		c.kind = (uint8_t)m->kind;
		c.role = (uint8_t)m->role;
		c.stable = m->name;
	}
	return c;
}

static void add_obs(struct detect_reader *r, int kind, int role, const char *v, size_t n, const char *field)
{
	while (n && (*v == '<' || *v == ' '))
		v++, n--;
	while (n && (v[n - 1] == '>' || v[n - 1] == ' '))
		n--;
	if (!n || r->n_obs >= MAX_OBS)
		return;
	if (kind == AUTO) {
		uint8_t k[16];
		unsigned pl;
		kind = detect_ip_parse(v, n, k, &pl) == 0 ? DETECT_IP : DETECT_DOMAIN;
	}
	if (kind == DETECT_CERT_SHA256) { /* Zeek's fingerprint: SHA-256 now, SHA-1 in old versions */
		size_t hex = 0;
		for (size_t i = 0; i < n; i++)
			hex += v[i] != ':';
		kind = detect_hash_kind(hex, true);
		if (!kind)
			return;
	}
	r->obs[r->n_obs++] = (struct detect_obs){ .kind = (uint8_t)kind, .role = (uint8_t)role, .value = v, .len = n,
						  .field = field };
}

static int64_t iso_us(const char *s);

/* Seconds since the epoch (Zeek's ts) as µs; 0 when not a time (out of range, NaN). */
static int64_t secs_us(double t)
{
	return t > -9.2e12 && t < 9.2e12 ? (int64_t)(t * 1e6) : 0;
}

/* A field's value: each element of a set or vector (split on sep), unless unset. */
static void field(struct detect_reader *r, const struct col *c, const char *v, size_t n, char sep)
{
	if (c->special == SP_TS) {
		/* Zeek's seconds.micros, read by hand (strtod was a tenth of a dns line's cost) */
		int64_t sec = 0, us = 0, scale = 100000;
		size_t i = 0;
		while (i < n && i < 12 && v[i] >= '0' && v[i] <= '9')
			sec = sec * 10 + (v[i++] - '0');
		if (i && i < n && v[i] == '.')
			for (i++; i < n && v[i] >= '0' && v[i] <= '9'; i++, scale /= 10)
				us += (v[i] - '0') * scale;
		if (i && i == n) {
			r->ts = sec * 1000000 + us;
			return;
		}
		char buf[40];
		if (n < sizeof buf) {
			memcpy(buf, v, n), buf[n] = 0;
			char *end;
			double t = strtod(buf, &end);
			if (end != buf && !*end)
				r->ts = secs_us(t);
			else
				r->ts = iso_us(buf); /* JSON: an ISO 8601 string */
		}
		return;
	}
	if (c->special == SP_HOST)
		r->host = v, r->host_len = n; /* pointers into the line or the JSON document */
	else if (c->special == SP_URI)
		r->uri = v, r->uri_len = n;
	if (!c->kind || (n == 1 && v[0] == '-') || (n == 7 && !memcmp(v, "(empty)", 7)))
		return;
	for (const char *p = v, *end = v + n; p < end;) {
		const char *q = sep ? memchr(p, sep, (size_t)(end - p)) : NULL;
		size_t k = q ? (size_t)(q - p) : (size_t)(end - p);
		add_obs(r, c->kind, c->role, p, k, c->stable);
		p += k + 1;
	}
}

/* Zeek and EVE: host + uri as a URL (in scratch, stable until the next line). */
static void http_url(struct detect_reader *r)
{
	if (!r->host || !r->uri || !r->uri_len || r->uri[0] != '/' || (r->host_len == 1 && r->host[0] == '-'))
		return;
	size_t at = r->scratch.len;
	if (kz_buf_reserve(&r->scratch, 7 + r->host_len + r->uri_len))
		return;
	/* reserved: appends do not move earlier observables' bytes */
	(void)kz_buf_append(&r->scratch, "http://", 7);
	(void)kz_buf_append(&r->scratch, r->host, r->host_len);
	(void)kz_buf_append(&r->scratch, r->uri, r->uri_len);
	add_obs(r, DETECT_URL, DETECT_ANY, (const char *)kz_buf_head(&r->scratch) + at, 7 + r->host_len + r->uri_len,
		"url");
}

static void header(struct detect_reader *r, char *p, size_t n)
{
	/* a separator is one ASCII character, as Zeek writes them: "#separator \x09" (two hex
	 * digits) or the character itself; anything else leaves the one in use */
	if (n > 11 && !strncmp(p, "#separator ", 11)) {
		const char *s = p + 11;
		size_t k = n - 11;
		int c = (unsigned char)s[0];
		if (k >= 2 && s[0] == '\\' && s[1] == 'x') {
			int hi = k == 4 ? kz_hexval(s[2]) : -1, lo = k == 4 ? kz_hexval(s[3]) : -1;
			c = hi < 0 || lo < 0 ? -1 : hi << 4 | lo;
		}
		if (c > 0 && c < 0x80)
			r->sep = (char)c;
	} else if (n > 15 && !strncmp(p, "#set_separator", 14)) {
		unsigned char c = (unsigned char)p[15];
		if (c && c < 0x80)
			r->set_sep = (char)c;
	} else if (n > 8 && !strncmp(p, "#fields", 7)) {
		for (size_t i = 0; i < r->n_names; i++)
			free(r->names[i]);
		r->n_names = 0;
		/* split as the lines are (tsv): a separator at the end ends an empty last name */
		for (char *f = p + 8, *end = p + n; r->n_names < MAX_FIELDS;) {
			char *t = memchr(f, r->sep, (size_t)(end - f));
			size_t k = t ? (size_t)(t - f) : (size_t)(end - f);
			r->names[r->n_names] = strndup(f, k);
			if (!r->names[r->n_names])
				break;
			r->cols[r->n_names] = classify(r->names[r->n_names]);
			r->n_names++;
			if (!t)
				break;
			f = t + 1;
		}
	}
}

int detect_reader_header(const struct detect_reader *r, struct kz_buf *out)
{
	if (!r->n_names)
		return 0;
	for (size_t i = 0; i < r->n_names; i++) /* split by another separator than the one now in use */
		if (strchr(r->names[i], r->sep))
			return 0;
	if (kz_buf_appendf(out, "#separator \\x%02x\n#set_separator%c%c\n#fields", (unsigned char)r->sep, r->sep,
			   r->set_sep))
		return KZ_ENOMEM;
	for (size_t i = 0; i < r->n_names; i++)
		if (kz_buf_append(out, &r->sep, 1) || kz_buf_append(out, r->names[i], strlen(r->names[i])))
			return KZ_ENOMEM;
	return kz_buf_append(out, "\n", 1) ? KZ_ENOMEM : 0;
}

static int tsv(struct detect_reader *r, const char *p, size_t n)
{
	if (!r->n_names)
		return -1;
	size_t i = 0;
	for (const char *f = p, *end = p + n; f <= end && i < r->n_names; i++) {
		const char *t = memchr(f, r->sep, (size_t)(end - f));
		size_t k = t ? (size_t)(t - f) : (size_t)(end - f);
		field(r, &r->cols[i], f, k, r->set_sep);
		f += k + 1;
		if (!t)
			break;
	}
	return 0;
}

/* The RFC 3339 time at the start of s (to the first space), to µs; 0 when not one. Suricata
 * writes its offset without a colon (+0000): that is put in before kz_time_parse reads it. */
static int64_t iso_us(const char *s)
{
	char t[48];
	size_t n = strcspn(s, " \t");
	if (n >= sizeof t - 1)
		return 0;
	memcpy(t, s, n);
	t[n] = 0;
	if (n > 5 && (t[n - 5] == '+' || t[n - 5] == '-') && strspn(t + n - 4, "0123456789") == 4) {
		memmove(t + n - 1, t + n - 2, 3); /* +0100 -> +01:00 */
		t[n - 2] = ':';
	}
	uint64_t ns;
	return kz_time_parse(t, &ns) ? 0 : (int64_t)(ns / 1000);
}

static void json_walk(struct detect_reader *r, const struct kz_json *v, char *path, size_t plen)
{
	if (v->type == KZ_JSON_OBJECT) {
		KZ_JSON_FOR(m, v) {
			size_t k = plen + (plen ? 1 : 0) + m->klen;
			if (k >= 200)
				continue;
			if (plen)
				path[plen] = '.';
			memcpy(path + plen + (plen ? 1 : 0), m->key, m->klen);
			path[k] = 0;
			json_walk(r, m, path, k);
			path[plen] = 0;
		}
	} else if (v->type == KZ_JSON_ARRAY) {
		KZ_JSON_FOR(m, v)
			json_walk(r, m, path, plen);
	} else if (v->type == KZ_JSON_STRING || (v->type == KZ_JSON_NUMBER && !strcmp(path, "ts"))) {
		struct col c = classify(path); /* keeps the table's name, not the path's buffer */
		field(r, &c, v->s, v->type == KZ_JSON_STRING ? v->len : strlen(v->s), 0);
	}
}

static int json(struct detect_reader *r, const char *p, size_t n)
{
	if (kz_json_parse(&r->doc, p, n) || kz_json_root(&r->doc)->type != KZ_JSON_OBJECT) {
		r->st.last_error = "a JSON line that is not an object";
		return -1;
	}
	char path[256] = "";
	json_walk(r, kz_json_root(&r->doc), path, 0);
	return 0;
}

static bool hexstr(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* Syslog: the header's time, then each token of the rest. */
static int syslog_line(struct detect_reader *r, const char *p, size_t n)
{
	const char *end = p + n, *q = p;
	if (q < end && *q == '<') {
		while (q < end && *q != '>')
			q++;
		if (q == end)
			return -1;
		q++;
	}
	if (q + 2 < end && q[0] == '1' && q[1] == ' ') { /* RFC 5424: version, time */
		char t[48]; /* the line is not NUL terminated: sscanf gets a copy */
		size_t k = (size_t)(end - q - 2) < sizeof t - 1 ? (size_t)(end - q - 2) : sizeof t - 1;
		memcpy(t, q + 2, k);
		t[k] = 0;
		r->ts = iso_us(t);
		q += 2;
	}
	static const char delim[] = " \t,;()[]{}\"'<>=|";
	while (q < end) {
		while (q < end && strchr(delim, *q))
			q++;
		const char *s = q;
		while (q < end && !strchr(delim, *q))
			q++;
		size_t k = (size_t)(q - s);
		while (k && (s[k - 1] == '.' || s[k - 1] == ':'))
			k--; /* the end of a sentence */
		if (k < 4)
			continue;
		uint8_t a[16];
		unsigned pl;
		if (detect_ip_parse(s, k, a, &pl) == 0)
			add_obs(r, DETECT_IP, DETECT_ANY, s, k, "message");
		else if (k > 8 && memmem(s, k, "://", 3))
			add_obs(r, DETECT_URL, DETECT_ANY, s, k, "message");
		else if (memchr(s, '@', k))
			add_obs(r, DETECT_EMAIL, DETECT_ANY, s, k, "message");
		else if (hexstr(s, k) && detect_hash_kind(k, false))
			add_obs(r, detect_hash_kind(k, false), DETECT_ANY, s, k, "message");
		else if (memchr(s, '.', k) && isalpha((unsigned char)s[k - 1])) {
			char d[256];
			size_t dl;
			if (detect_domain_norm(s, k, d, sizeof d, &dl) == 0)
				add_obs(r, DETECT_DOMAIN, DETECT_ANY, s, k, "message");
		}
	}
	return 0;
}

int detect_reader_line(struct detect_reader *r, const char *p, size_t n)
{
	if (n && p[n - 1] == '\r')
		n--;
	r->st.lines++;
	if (!n)
		return 0;
	r->n_obs = 0;
	r->host = r->uri = NULL;
	r->ts = 0;
	kz_buf_reset(&r->scratch);
	int rc;
	if (p[0] == '#' && r->fmt != DETECT_SYSLOG && r->fmt != DETECT_EVE) {
		kz_buf_reset(&r->line);
		if (kz_buf_append(&r->line, p, n))
			return -1;
		header(r, (char *)kz_buf_head(&r->line), n);
		return 0;
	}
	enum detect_format f = r->fmt;
	if (f == DETECT_AUTO)
		f = p[0] == '{' ? DETECT_ZEEK_JSON : r->n_names ? DETECT_ZEEK_TSV : DETECT_SYSLOG;
	if (f == DETECT_ZEEK_JSON || f == DETECT_EVE)
		rc = json(r, p, n);
	else if (f == DETECT_ZEEK_TSV)
		rc = tsv(r, p, n);
	else
		rc = syslog_line(r, p, n);
	if (rc) {
		r->st.errors++;
		if (!r->st.last_error)
			r->st.last_error = f == DETECT_ZEEK_TSV ? "a Zeek TSV line before its #fields header"
							       : "a line that does not parse";
		return -1;
	}
	http_url(r);
	r->st.events++;
	r->fn(r->ctx, r->obs, r->n_obs, r->ts, p, n);
	return 0;
}
