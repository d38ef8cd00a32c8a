/* cot.c — Cursor-on-Target events: the stream splitter, the expat parse, and the two
 * conversions (cot.h). Element and attribute names follow the CoT 2.0 event schema as TAK
 * clients use it: event (uid, type, how, time, start, stale, access, caveat, releaseableTo),
 * point (lat, lon, hae, ce, le), detail/contact@callsign, detail/track (speed, course),
 * detail/remarks. */
#include "adapters/cot.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"
#include "base/kz_json.h"
#include "base/kz_time.h"
#include "base/kz_topic.h"

#include <expat.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIT(b, s) kz_buf_append((b), (s), sizeof(s) - 1)
#define MAX_DEPTH 32
#define MAX_ELEMENTS 1024

/* ---------- one event ---------- */

struct parse {
	XML_Parser xp;
	struct cot_event *e;
	int depth, elements;
	bool in_detail, in_remarks, saw_event;
	size_t remarks_len;
	const char *why;
};

static void stop(struct parse *p, const char *why)
{
	if (!p->why)
		p->why = why;
	XML_StopParser(p->xp, XML_FALSE);
}

static bool number(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || !isfinite(v) || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static void copy(char *dst, size_t cap, const char *s)
{
	snprintf(dst, cap, "%s", s);
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **at)
{
	struct parse *p = ud;
	struct cot_event *e = p->e;
	if (++p->depth > MAX_DEPTH || ++p->elements > MAX_ELEMENTS) {
		stop(p, "CoT: nested deeper than 32 or more than 1024 elements");
		return;
	}
	if (p->depth == 1) {
		if (strcmp(name, "event")) {
			stop(p, "CoT: the root element is not <event>");
			return;
		}
		p->saw_event = true;
		for (int i = 0; at[i]; i += 2) {
			const char *k = at[i], *v = at[i + 1];
			if (!strcmp(k, "uid")) {
				if (strlen(v) > COT_UID_MAX || !*v) {
					stop(p, "CoT: uid empty or longer than 128 bytes");
					return;
				}
				copy(e->uid, sizeof e->uid, v);
			} else if (!strcmp(k, "type")) {
				if (strlen(v) > COT_TYPE_MAX || !*v) {
					stop(p, "CoT: type empty or longer than 64 bytes");
					return;
				}
				copy(e->type, sizeof e->type, v);
			} else if (!strcmp(k, "how")) {
				copy(e->how, sizeof e->how, v);
			} else if (!strcmp(k, "time") || !strcmp(k, "start") || !strcmp(k, "stale")) {
				uint64_t ns;
				if (kz_time_parse(v, &ns)) {
					stop(p, "CoT: time, start or stale is not an ISO 8601 date-time");
					return;
				}
				if (!strcmp(k, "time"))
					e->time_ns = ns;
				else if (!strcmp(k, "start"))
					e->start_ns = ns;
				else
					e->stale_ns = ns;
			} else if (!strcmp(k, "access")) {
				copy(e->access, sizeof e->access, v);
			} else if (!strcmp(k, "caveat")) {
				copy(e->caveat, sizeof e->caveat, v);
			} else if (!strcmp(k, "releaseableTo") || !strcmp(k, "releasableTo")) {
				copy(e->releasable, sizeof e->releasable, v);
			}
		}
		if (!e->uid[0] || !e->type[0])
			stop(p, "CoT: an event needs uid and type");
		return;
	}
	if (p->depth == 2 && !strcmp(name, "point")) {
		double v[5] = { 0, 0, 9999999, 9999999, 9999999 };
		static const char *const keys[5] = { "lat", "lon", "hae", "ce", "le" };
		static const double lo[5] = { -90, -180, -1e7, 0, 0 }, hi[5] = { 90, 180, 1e7, 1e7, 1e7 };
		unsigned seen = 0;
		for (int i = 0; at[i]; i += 2)
			for (int k = 0; k < 5; k++)
				if (!strcmp(at[i], keys[k])) {
					if (!number(at[i + 1], lo[k], hi[k], &v[k])) {
						stop(p, "CoT: a point attribute is not a number in range");
						return;
					}
					seen |= 1u << k;
				}
		if ((seen & 3) != 3) {
			stop(p, "CoT: a point without lat and lon");
			return;
		}
		e->has_point = true;
		e->lat = v[0], e->lon = v[1], e->hae = v[2], e->ce = v[3], e->le = v[4];
		return;
	}
	if (p->depth == 2 && !strcmp(name, "detail")) {
		p->in_detail = true;
		e->detail_off = (size_t)XML_GetCurrentByteIndex(p->xp) + (size_t)XML_GetCurrentByteCount(p->xp);
		return;
	}
	if (p->depth == 4 && p->in_detail && !strcmp(name, "TakRequest")) { /* in TakControl: a protocol request */
		e->tak_request = -1;
		for (int i = 0; at[i]; i += 2) {
			double v;
			if (!strcmp(at[i], "version") && number(at[i + 1], 1, 1000, &v) && v == (int)v)
				e->tak_request = (int)v;
		}
		return;
	}
	if (p->depth == 3 && p->in_detail) {
		if (!strcmp(name, "contact")) {
			for (int i = 0; at[i]; i += 2)
				if (!strcmp(at[i], "callsign"))
					copy(e->callsign, sizeof e->callsign, at[i + 1]);
		} else if (!strcmp(name, "track")) {
			double sp = 0, co = 0;
			bool ok = true;
			for (int i = 0; at[i]; i += 2) {
				if (!strcmp(at[i], "speed"))
					ok &= number(at[i + 1], 0, 1e5, &sp);
				else if (!strcmp(at[i], "course"))
					ok &= number(at[i + 1], -360, 720, &co);
			}
			if (ok) {
				e->has_track = true;
				e->speed = sp;
				e->course = fmod(fmod(co, 360) + 360, 360);
			}
		} else if (!strcmp(name, "remarks")) {
			p->in_remarks = true;
		}
	}
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
	struct parse *p = ud;
	if (p->depth == 3 && !strcmp(name, "remarks"))
		p->in_remarks = false;
	if (p->depth == 2 && !strcmp(name, "detail")) {
		p->in_detail = false;
		size_t end = (size_t)XML_GetCurrentByteIndex(p->xp); /* the end tag's start; of <detail/>, its own */
		p->e->detail_len = end > p->e->detail_off ? end - p->e->detail_off : 0;
		if (!p->e->detail_len)
			p->e->detail_off = 0;
	}
	p->depth--;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
	struct parse *p = ud;
	if (!p->in_remarks || len <= 0)
		return;
	size_t room = sizeof p->e->remarks - 1 - p->remarks_len;
	size_t n = (size_t)len < room ? (size_t)len : room;
	memcpy(p->e->remarks + p->remarks_len, s, n);
	p->remarks_len += n;
	p->e->remarks[p->remarks_len] = 0;
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
			       int has_internal)
{
	(void)name, (void)sysid, (void)pubid, (void)has_internal;
	stop(ud, "CoT: a DOCTYPE (DTDs are refused: no entities, no external references)");
}

static void XMLCALL on_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value, int value_len,
			      const XML_Char *base, const XML_Char *sysid, const XML_Char *pubid,
			      const XML_Char *notation)
{
	(void)name, (void)is_param, (void)value, (void)value_len, (void)base, (void)sysid, (void)pubid, (void)notation;
	stop(ud, "CoT: an entity declaration (refused)");
}

static int parse_with(XML_Parser xp, const char *xml, size_t n, struct cot_event *e, const char **why)
{
	memset(e, 0, sizeof *e);
	struct parse p = { .xp = xp, .e = e };
	XML_SetUserData(xp, &p);
	XML_SetElementHandler(xp, on_start, on_end);
	XML_SetCharacterDataHandler(xp, on_text);
	XML_SetStartDoctypeDeclHandler(xp, on_doctype);
	XML_SetEntityDeclHandler(xp, on_entity);
	XML_SetParamEntityParsing(xp, XML_PARAM_ENTITY_PARSING_NEVER);
	if (n > INT32_MAX || XML_Parse(xp, xml, (int)n, XML_TRUE) != XML_STATUS_OK) {
		*why = p.why ? p.why : "CoT: not well-formed XML";
		return -1;
	}
	if (!p.saw_event) {
		*why = "CoT: no <event>";
		return -1;
	}
	e->xml = xml;
	e->xml_len = n;
	return 0;
}

int cot_parse(const char *xml, size_t n, struct cot_event *e, const char **why)
{
	XML_Parser xp = XML_ParserCreate("UTF-8");
	if (!xp) {
		*why = "out of memory";
		return -1;
	}
	int rc = parse_with(xp, xml, n, e, why);
	XML_ParserFree(xp);
	return rc;
}

/* ---------- the stream ---------- */

enum { SEEK, IN_TAG, IN_EVENT };

struct cot_reader {
	size_t max;
	cot_event_fn on_event;
	cot_error_fn on_error;
	void *ctx;
	XML_Parser xp;
	struct kz_buf pending;   /* from the current event's "<event" on (or the unsearched tail) */
	int state;
	size_t scan;             /* where the search goes on in pending */
	bool stopped;            /* cot_reader_stop(): no more events */
	char quote;              /* IN_TAG: the open attribute quote, 0: none */
};

struct cot_reader *cot_reader_new(size_t max_event_bytes, cot_event_fn on_event, cot_error_fn on_error, void *ctx)
{
	struct cot_reader *r = calloc(1, sizeof *r);
	if (!r || !(r->xp = XML_ParserCreate("UTF-8"))) {
		free(r);
		return NULL;
	}
	r->max = max_event_bytes;
	r->on_event = on_event;
	r->on_error = on_error;
	r->ctx = ctx;
	kz_buf_init(&r->pending, 0);
	return r;
}

void cot_reader_free(struct cot_reader *r)
{
	if (!r)
		return;
	XML_ParserFree(r->xp);
	kz_buf_cleanup(&r->pending);
	free(r);
}

static void emit(struct cot_reader *r, size_t end)
{
	struct cot_event e;
	const char *why;
	XML_ParserReset(r->xp, "UTF-8");
	if (end > r->max)
		r->on_error(r->ctx, "CoT: an event longer than the configured cap (tak.max_event_bytes)");
	else if (parse_with(r->xp, (const char *)kz_buf_head(&r->pending), end, &e, &why))
		r->on_error(r->ctx, why);
	else
		r->on_event(r->ctx, &e);
	kz_buf_consume(&r->pending, end);
	r->state = SEEK;
	r->scan = 0;
}

void cot_reader_stop(struct cot_reader *r)
{
	r->stopped = true;
}

const char *cot_reader_rest(const struct cot_reader *r, size_t *n)
{
	*n = r->pending.len;
	return (const char *)kz_buf_head(&r->pending);
}

static const char *find(const char *h, size_t hn, const char *needle)
{
	size_t nn = strlen(needle);
	for (size_t i = 0; i + nn <= hn; i++) {
		const char *q = memchr(h + i, needle[0], hn - i);
		if (!q || (size_t)(q - h) + nn > hn)
			return NULL;
		if (!memcmp(q, needle, nn))
			return q;
		i = (size_t)(q - h);
	}
	return NULL;
}

void cot_reader_feed(struct cot_reader *r, const char *p, size_t n)
{
	if (r->stopped)
		return;
	if (kz_buf_append(&r->pending, p, n)) {
		r->on_error(r->ctx, "out of memory");
		kz_buf_reset(&r->pending);
		r->state = SEEK;
		return;
	}
	while (!r->stopped) {
		const char *b = (const char *)kz_buf_head(&r->pending);
		size_t len = r->pending.len;
		if (r->state == SEEK) {
			const char *s = find(b, len, "<event");
			if (!s || (size_t)(s - b) + 6 >= len) { /* keep what may be the start of "<event" */
				size_t keep = s ? len - (size_t)(s - b) : (len < 6 ? len : 6);
				kz_buf_consume(&r->pending, len - keep);
				return;
			}
			char after = s[6];
			if (after != ' ' && after != '\t' && after != '\r' && after != '\n' && after != '>' && after != '/') {
				kz_buf_consume(&r->pending, (size_t)(s - b) + 1); /* <eventual...: not ours */
				continue;
			}
			kz_buf_consume(&r->pending, (size_t)(s - b)); /* prologs, whitespace, garbage */
			r->state = IN_TAG;
			r->scan = 6;
			r->quote = 0;
			continue;
		}
		if (r->scan > r->max) { /* this event has not ended within the cap (later events may be here too) */
			r->on_error(r->ctx, "CoT: an event longer than the configured cap (tak.max_event_bytes)");
			kz_buf_consume(&r->pending, 1); /* and look for the next <event */
			r->state = SEEK;
			continue;
		}
		if (r->state == IN_TAG) { /* the start tag: quoted values may hold '>' */
			size_t i = r->scan;
			for (; i < len; i++) {
				char c = b[i];
				if (r->quote) {
					if (c == r->quote)
						r->quote = 0;
				} else if (c == '"' || c == '\'') {
					r->quote = c;
				} else if (c == '>') {
					break;
				}
			}
			if (i == len) {
				r->scan = i;
				return;
			}
			if (b[i - 1] == '/') { /* <event .../>: complete */
				emit(r, i + 1);
				continue;
			}
			r->state = IN_EVENT;
			r->scan = i + 1;
			continue;
		}
		/* IN_EVENT: the end tag, past comments and CDATA sections */
		size_t i = r->scan;
		bool wait = false;
		for (; i < len; i++) {
			if (b[i] != '<')
				continue;
			size_t left = len - i;
			if (left >= 2 && b[i + 1] == '!') {
				if (left < 9) { /* "<!--" or "<![CDATA[" may still be coming */
					wait = true;
					break;
				}
				bool cdata = !memcmp(b + i, "<![CDATA[", 9);
				if (!cdata && memcmp(b + i, "<!--", 4))
					continue;
				const char *e = find(b + i + 4, len - i - 4, cdata ? "]]>" : "-->");
				if (!e) {
					wait = true;
					break;
				}
				i = (size_t)(e - b) + 2;
				continue;
			}
			if (left < 8) { /* "</event>" may still be coming */
				wait = true;
				break;
			}
			if (!memcmp(b + i, "</event", 7)) {
				size_t k = i + 7;
				while (k < len && (b[k] == ' ' || b[k] == '\t' || b[k] == '\r' || b[k] == '\n'))
					k++;
				if (k == len) {
					wait = true;
					break;
				}
				if (b[k] == '>') {
					emit(r, k + 1);
					goto next;
				}
			}
		}
		(void)wait;
		r->scan = i;
		return;
	next:;
	}
}

/* ---------- conversions ---------- */

void cot_uid_name(const char *uid, char *out, size_t cap)
{
	size_t ul = strlen(uid);
	if (kz_name_valid(uid, ul, 120)) {
		snprintf(out, cap, "%s", uid);
		return;
	}
	char clean[COT_UID_MAX + 1]; /* a uid a topic level cannot carry: readable part, and a hash */
	size_t k = 0;
	for (size_t i = 0; i < ul && k < 100; i++)
		clean[k++] = kz_name_valid(uid + i, 1, 1) ? uid[i] : '_';
	clean[k] = 0;
	snprintf(out, cap, "%s-%08x", clean, (unsigned)(kz_hash(uid, ul) & 0xffffffffu));
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

int cot_to_entity(const struct cot_event *e, struct kz_buf *b, char *id, size_t id_cap)
{
	if (strncmp(e->type, "a-", 2) || !e->has_point || !printable(e->type))
		return KZ_EINVAL;
	char name[COT_UID_MAX + 16];
	cot_uid_name(e->uid, name, sizeof name);
	snprintf(id, id_cap, "cot:%s", name);
	int rc = LIT(b, "{\"id\":") || kz_json_put_str(b, id) || LIT(b, ",\"type\":") ||
		 kz_json_put_str(b, e->type);
	if (e->callsign[0] && printable(e->callsign)) /* an entity's name has no control characters */
		rc = rc || LIT(b, ",\"name\":") || kz_json_put_str(b, e->callsign);
	rc = rc || LIT(b, ",\"position\":{\"lat\":") || kz_buf_append_fixed(b, e->lat, 7) ||
	     LIT(b, ",\"lon\":") || kz_buf_append_fixed(b, e->lon, 7);
	if (e->hae < 9999999)
		rc = rc || LIT(b, ",\"hae\":") || kz_buf_append_fixed(b, e->hae, 1);
	if (e->ce < 9999999)
		rc = rc || LIT(b, ",\"ce\":") || kz_buf_append_fixed(b, e->ce, 1);
	if (e->le < 9999999)
		rc = rc || LIT(b, ",\"le\":") || kz_buf_append_fixed(b, e->le, 1);
	rc = rc || LIT(b, "}");
	if (e->has_track)
		rc = rc || LIT(b, ",\"motion\":{\"course\":") || kz_buf_append_fixed(b, e->course, 2) ||
		     LIT(b, ",\"speed\":") || kz_buf_append_fixed(b, e->speed, 3) || LIT(b, "}");
	char t[32];
	if (e->time_ns) {
		kz_time_format(e->time_ns, t);
		rc = rc || LIT(b, ",\"source_time\":\"") || kz_buf_append(b, t, strlen(t)) ||
		     LIT(b, "\"");
	}
	if (e->stale_ns && e->stale_ns >= e->time_ns) {
		kz_time_format(e->stale_ns, t);
		rc = rc || LIT(b, ",\"stale_time\":\"") || kz_buf_append(b, t, strlen(t)) ||
		     LIT(b, "\"");
	}
	rc = rc || LIT(b, ",\"provenance\":{\"adapter\":\"tak\"},\"attributes\":{\"uid\":") ||
	     kz_json_put_str(b, e->uid);
	if (e->how[0])
		rc = rc || LIT(b, ",\"how\":") || kz_json_put_str(b, e->how);
	if (e->remarks[0])
		rc = rc || LIT(b, ",\"remarks\":") || kz_json_put_str(b, e->remarks);
	rc = rc || LIT(b, "}}");
	return rc ? KZ_ENOMEM : KZ_OK;
}

int cot_xml_text(struct kz_buf *b, const char *s)
{
	for (const char *q = s; *q; q++) {
		unsigned char c = (unsigned char)*q;
		const char *esc = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&quot;"
			       : c == '\'' ? "&apos;" : NULL;
		if (esc) {
			if (kz_buf_append(b, esc, strlen(esc)))
				return KZ_ENOMEM;
		} else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
			continue; /* not allowed in XML 1.0 */
		} else if (kz_buf_append(b, q, 1)) {
			return KZ_ENOMEM;
		}
	}
	return KZ_OK;
}

static int attr(struct kz_buf *b, const char *k, const char *v)
{
	return LIT(b, " ") || kz_buf_append(b, k, strlen(k)) || LIT(b, "=\"") ||
	       cot_xml_text(b, v) || LIT(b, "\"");
}

static int attr_num(struct kz_buf *b, const char *k, double v, unsigned decimals)
{
	return LIT(b, " ") || kz_buf_append(b, k, strlen(k)) || LIT(b, "=\"") ||
	       kz_buf_append_fixed(b, v, decimals) || LIT(b, "\"");
}

int cot_write(const struct cot_out *o, struct kz_buf *b)
{
	char t[32], s[32];
	kz_time_format(o->time_ns, t);
	kz_time_format(o->stale_ns, s);
	int rc = LIT(b, "<event version=\"2.0\"") || attr(b, "uid", o->uid) || attr(b, "type", o->type) ||
		 attr(b, "how", "m-g") || attr(b, "time", t) || attr(b, "start", t) || attr(b, "stale", s) ||
		 (o->access && attr(b, "access", o->access)) || (o->releasable && attr(b, "releaseableTo", o->releasable)) ||
		 LIT(b, ">");
	if (o->has_point) {
		rc = rc || LIT(b, "<point") || attr_num(b, "lat", o->lat, 7) || attr_num(b, "lon", o->lon, 7);
		rc = rc || (isnan(o->hae) ? attr(b, "hae", "9999999.0") : attr_num(b, "hae", o->hae, 1));
		rc = rc || (isnan(o->ce) ? attr(b, "ce", "9999999.0") : attr_num(b, "ce", o->ce, 1));
		rc = rc || (isnan(o->le) ? attr(b, "le", "9999999.0") : attr_num(b, "le", o->le, 1));
		rc = rc || LIT(b, "/>");
	}
	rc = rc || LIT(b, "<detail>");
	if (o->callsign && *o->callsign)
		rc = rc || LIT(b, "<contact") || attr(b, "callsign", o->callsign) || LIT(b, "/>");
	if (o->has_track)
		rc = rc || LIT(b, "<track") || attr_num(b, "course", o->course, 2) ||
		     attr_num(b, "speed", o->speed, 3) || LIT(b, "/>");
	if (o->remarks && *o->remarks)
		rc = rc || LIT(b, "<remarks>") || cot_xml_text(b, o->remarks) || LIT(b, "</remarks>");
	rc = rc || LIT(b, "</detail></event>");
	return rc ? KZ_ENOMEM : KZ_OK;
}
