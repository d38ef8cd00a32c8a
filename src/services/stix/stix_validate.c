/* stix_validate.c — STIX 2.1 validation on write (see stix.h for the rules and sections). */
#include "services/stix/stix.h"
#include "base/kz_hex.h"

#define KZ_IS_STR(x) kz_json_is(x, KZ_JSON_STRING)
#define KZ_IS_OBJ(x) kz_json_is(x, KZ_JSON_OBJECT)
#define KZ_IS_ARR(x) kz_json_is(x, KZ_JSON_ARRAY)
#define KZ_LEN(x) ((x) ? (size_t)(x)->len : 0)

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vx {
	char *err;
	size_t err_len;
	const struct stix_opts *opts;
	struct stix_info *info;
};

static int bad(struct vx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct vx *v, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->err, v->err_len, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---------- types ---------- */

static const char *const sdo_types[] = { "attack-pattern", "campaign", "course-of-action", "grouping", "identity",
					  "incident", "indicator", "infrastructure", "intrusion-set", "location",
					  "malware", "malware-analysis", "note", "observed-data", "opinion", "report",
					  "threat-actor", "tool", "vulnerability", NULL };
static const char *const sro_types[] = { "relationship", "sighting", NULL };
static const char *const sco_types[] = { "artifact", "autonomous-system", "directory", "domain-name", "email-addr",
					  "email-message", "file", "ipv4-addr", "ipv6-addr", "mac-addr", "mutex",
					  "network-traffic", "process", "software", "url", "user-account",
					  "windows-registry-key", "x509-certificate", NULL };
static const char *const meta_types[] = { "marking-definition", "language-content", "extension-definition", NULL };

static bool in_list(const char *const *l, const char *s)
{
	for (; *l; l++)
		if (strcmp(*l, s) == 0)
			return true;
	return false;
}

/* §2.9 / §3.1: 3–250 characters of a–z, 0–9 and '-'; starts with a letter, no "--", does
 * not end with '-'. */
static bool type_ok(const char *t, size_t n)
{
	if (n < 3 || n > STIX_TYPE_MAX || !(t[0] >= 'a' && t[0] <= 'z') || t[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = t[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
		if (c == '-' && i + 1 < n && t[i + 1] == '-')
			return false;
	}
	return true;
}


/* An RFC 4122 UUID (8-4-4-4-12 hex, version 1–5, variant 10xx) into 16 bytes. */
static bool uuid_ok(const char *u, uint8_t out[16])
{
	if (strlen(u) != 36 || u[8] != '-' || u[13] != '-' || u[18] != '-' || u[23] != '-')
		return false;
	int k = 0;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23)
			continue;
		int a = kz_hexval(u[i]), b = kz_hexval(u[i + 1]);
		if (a < 0 || b < 0)
			return false;
		out[k++] = (uint8_t)(a * 16 + b);
		i++;
	}
	int ver = out[6] >> 4;
	return ver >= 1 && ver <= 5 && (out[8] & 0xc0) == 0x80;
}

/* "type--UUID" with a valid type; *tl receives the type's length. */
static bool ident_ok(const char *s, size_t *tl, uint8_t uuid[16])
{
	const char *dd = strstr(s, "--");
	uint8_t tmp[16];
	if (!dd || !type_ok(s, (size_t)(dd - s)) || !uuid_ok(dd + 2, uuid ? uuid : tmp))
		return false;
	if (tl)
		*tl = (size_t)(dd - s);
	return true;
}

/* ---------- property checks ---------- */

static const char *str_of(const struct kz_json *o, const char *k) { return kz_json_str(kz_json_get(o, k)); }

static int need_str(struct vx *v, const struct kz_json *o, const char *k)
{
	const struct kz_json *x = kz_json_get(o, k);
	if (!x)
		return bad(v, "%s: required property is missing", k);
	if (!KZ_IS_STR(x) || x->len == 0)
		return bad(v, "%s: must be a non-empty string", k);
	return 0;
}

static int check_ts(struct vx *v, const struct kz_json *o, const char *k, bool required, bool millis, int64_t *us)
{
	const struct kz_json *x = kz_json_get(o, k);
	if (!x)
		return required ? bad(v, "%s: required property is missing", k) : 0;
	int frac;
	int64_t t;
	if (!KZ_IS_STR(x) || stix_timestamp(kz_json_str(x), &t, &frac))
		return bad(v, "%s: not an RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SS[.fraction of 1 to 9 digits]Z)", k);
	if (millis && frac < 3)
		return bad(v, "%s: must be precise to the millisecond (STIX 2.1 §3.2), got \"%s\"", k, kz_json_str(x));
	if (v->opts->now_us && t > v->opts->now_us + 86400LL * 1000000)
		return bad(v, "%s: \"%s\" is more than a day in the future", k, kz_json_str(x));
	if (us)
		*us = t;
	return 0;
}

static int check_ref(struct vx *v, const char *k, const struct kz_json *x, const char *want_type)
{
	size_t tl;
	if (!KZ_IS_STR(x) || !ident_ok(kz_json_str(x), &tl, NULL))
		return bad(v, "%s: must be an identifier (type--UUID)", k);
	if (want_type && (strlen(want_type) != tl || memcmp(kz_json_str(x), want_type, tl) != 0))
		return bad(v, "%s: must reference a %s, not \"%s\"", k, want_type, kz_json_str(x));
	return 0;
}

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && memcmp(s + a - b, suf, b) == 0;
}

/* Every *_ref and *_refs property, at any depth (§2.10), holds identifiers. */
static int walk_refs(struct vx *v, const struct kz_json *o, int depth)
{
	if (depth > 32)
		return bad(v, "object nested more than 32 deep");
	if (KZ_IS_ARR(o)) {
		KZ_JSON_FOR(x, o) {
			if (walk_refs(v, x, depth + 1))
				return -1;
		}
		return 0;
	}
	if (!KZ_IS_OBJ(o))
		return 0;
	KZ_JSON_FOR(x, o) {
		const char *k = x->key;
		if (strncmp(k, "x_", 2) == 0)
			continue; /* custom properties: §2.10 binds the spec's own *_ref properties */
		if (ends_with(k, "_ref")) {
			if (check_ref(v, k, x, NULL))
				return -1;
		} else if (ends_with(k, "_refs")) {
			if (!KZ_IS_ARR(x))
				return bad(v, "%s: must be a list of identifiers", k);
			KZ_JSON_FOR(e, x) {
				if (check_ref(v, k, e, NULL))
					return -1;
			}
		} else if (walk_refs(v, x, depth + 1))
			return -1;
	}
	return 0;
}

static int nonempty_list(struct vx *v, const struct kz_json *o, const char *k, bool required)
{
	const struct kz_json *x = kz_json_get(o, k);
	if (!x)
		return required ? bad(v, "%s: required property is missing", k) : 0;
	if (!KZ_IS_ARR(x) || KZ_LEN(x) == 0)
		return bad(v, "%s: must be a non-empty list", k);
	return 0;
}

static int string_list(struct vx *v, const struct kz_json *o, const char *k)
{
	const struct kz_json *x = kz_json_get(o, k);
	if (!x)
		return 0;
	if (!KZ_IS_ARR(x))
		return bad(v, "%s: must be a list of strings", k);
	KZ_JSON_FOR(e, x) {
		if (!KZ_IS_STR(e))
			return bad(v, "%s: must be a list of strings", k);
	}
	return 0;
}

static int int_range(struct vx *v, const struct kz_json *o, const char *k, long long lo, long long hi, bool required)
{
	const struct kz_json *x = kz_json_get(o, k);
	if (!x)
		return required ? bad(v, "%s: required property is missing", k) : 0;
	long long n;
	if (!kz_json_int(x, &n) || n < lo || n > hi)
		return bad(v, "%s: must be an integer from %lld to %lld", k, (long long)lo, (long long)hi);
	return 0;
}

/* The common properties of §3.2 that any object may carry. */
static int common(struct vx *v, const struct kz_json *o)
{
	const struct kz_json *x;
	if ((x = kz_json_get(o, "revoked")) && !kz_json_is_bool(x))
		return bad(v, "revoked: must be true or false");
	if (string_list(v, o, "labels") || int_range(v, o, "confidence", 0, 100, false))
		return -1;
	if ((x = kz_json_get(o, "lang")) && !KZ_IS_STR(x))
		return bad(v, "lang: must be a string (RFC 5646 language code)");
	if ((x = kz_json_get(o, "external_references"))) {
		size_t i = 0;
		if (!KZ_IS_ARR(x))
			return bad(v, "external_references: must be a list");
		KZ_JSON_FOR(e, x) {
			if (!KZ_IS_OBJ(e) || !KZ_IS_STR(kz_json_get(e, "source_name")))
				return bad(v, "external_references[%zu]: needs a source_name string", i);
			i++;
		}
	}
	if ((x = kz_json_get(o, "granular_markings"))) {
		size_t i = 0;
		if (!KZ_IS_ARR(x))
			return bad(v, "granular_markings: must be a list");
		KZ_JSON_FOR(e, x) {
			const struct kz_json *sel = KZ_IS_OBJ(e) ? kz_json_get(e, "selectors") : NULL;
			if (!sel || !KZ_IS_ARR(sel) || KZ_LEN(sel) == 0)
				return bad(v, "granular_markings[%zu]: needs a non-empty selectors list", i);
			const struct kz_json *mr = kz_json_get(e, "marking_ref");
			if (!mr && !kz_json_get(e, "lang"))
				return bad(v, "granular_markings[%zu]: needs marking_ref or lang", i);
			if (mr && check_ref(v, "granular_markings.marking_ref", mr, "marking-definition"))
				return -1;
			i++;
		}
	}
	if ((x = kz_json_get(o, "extensions"))) {
		if (!KZ_IS_OBJ(x))
			return bad(v, "extensions: must be a dictionary");
		KZ_JSON_FOR(e, x) {
			const char *k = e->key;
			if (!KZ_IS_OBJ(e))
				return bad(v, "extensions.%s: must be an object", k);
			if (strncmp(k, "extension-definition--", 22) == 0) {
				if (!ident_ok(k, NULL, NULL))
					return bad(v, "extensions: \"%s\" is not an extension-definition identifier", k);
			} else if (!ends_with(k, "-ext")) {
				if (!v->opts->allow_custom)
					return bad(v, "extensions.%s: custom extensions are not allowed in this collection", k);
				v->info->custom = true;
			}
		}
	}
	return 0;
}

/* object_marking_refs: identifiers of resolvable marking definitions; TLP levels noted and
 * TLP 1.0 / OpenCTI ids rewritten to TLP 2.0. */
static int markings(struct vx *v, const struct kz_json *o)
{
	const struct kz_json *x = kz_json_get(o, "object_marking_refs");
	if (!x)
		return 0;
	if (!KZ_IS_ARR(x))
		return bad(v, "object_marking_refs: must be a list of marking-definition identifiers");
	if (x->len > STIX_MAX_MARKINGS)
		return bad(v, "object_marking_refs: more than %d markings", STIX_MAX_MARKINGS);
	int tlp = 0;
	KZ_JSON_FOR(e, x) {
		if (check_ref(v, "object_marking_refs", e, "marking-definition"))
			return -1;
		const char *id = kz_json_str(e);
		int t = stix_tlp_of(id);
		if (t) {
			if (tlp && tlp != t)
				return bad(v, "object_marking_refs: two different TLP levels");
			tlp = t;
			if (strcmp(id, stix_tlp2_id(t)) != 0)
				v->info->tlp_rewritten = true;
		} else if (!v->opts->marking_known || !v->opts->marking_known(v->opts->ctx, id))
			return bad(v, "object_marking_refs: %s does not resolve (not a TLP marking, not in this request "
				      "or the collection)", id);
	}
	/* the same marking named twice (a TLP level by its 1.0 and 2.0 ids, say) is kept once */
	const char *l[STIX_MAX_MARKINGS];
	if (stix_markings(o, l) != x->len)
		v->info->tlp_rewritten = true;
	v->info->tlp = (uint8_t)tlp;
	return 0;
}

size_t stix_markings(const struct kz_json *o, const char *out[STIX_MAX_MARKINGS])
{
	size_t k = 0;
	KZ_JSON_FOR(e, kz_json_get(o, "object_marking_refs")) {
		const char *id = kz_json_str(e);
		int t = id ? stix_tlp_of(id) : 0;
		if (t)
			id = stix_tlp2_id(t);
		bool dup = !id;
		for (size_t j = 0; j < k && !dup; j++)
			dup = strcmp(out[j], id) == 0;
		if (!dup && k < STIX_MAX_MARKINGS)
			out[k++] = id;
	}
	return k;
}

char *stix_rewrite(const char *text, const struct kz_json *o, size_t *len)
{
	const struct kz_json *x = kz_json_get(o, "object_marking_refs");
	const char *l[STIX_MAX_MARKINGS];
	size_t k = stix_markings(o, l);
	size_t head = x ? x->off - o->off : o->end - o->off, tail = x ? o->end - x->end : 0, n = head + 2 + tail;
	for (size_t i = 0; i < k; i++)
		n += strlen(l[i]) + 3;
	char *s = malloc(n + 1), *w = s;
	if (!s)
		return NULL;
	memcpy(w, text + o->off, head);
	w += head;
	if (x) { /* identifiers (checked by validation) need no escaping */
		*w++ = '[';
		for (size_t i = 0; i < k; i++)
			w += sprintf(w, "%s\"%s\"", i ? "," : "", l[i]);
		*w++ = ']';
		memcpy(w, text + x->end, tail);
		w += tail;
	}
	*w = 0;
	*len = (size_t)(w - s);
	return s;
}

/* Property names (§3.1): ASCII letters, digits and '_', at most 250; x_ and names the spec
 * does not define are custom (allowed only when the collection allows them). */
static int prop_names(struct vx *v, const struct kz_json *o)
{
	KZ_JSON_FOR(x, o) {
		const char *k = x->key;
		size_t n = x->klen;
		if (n == 0 || n > 250)
			return bad(v, "property name \"%.40s\" must be 1 to 250 characters", k);
		for (size_t i = 0; i < n; i++) {
			char c = k[i];
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
				return bad(v, "property name \"%.60s\": only ASCII letters, digits and '_' are allowed", k);
		}
		if (strncmp(k, "x_", 2) == 0) {
			if (n < 3)
				return bad(v, "custom property \"%s\" must be at least 3 characters", k);
			if (!v->opts->allow_custom)
				return bad(v, "%s: custom properties are not allowed in this collection", k);
			v->info->custom = true;
		}
	}
	return 0;
}

/* ---------- per type ---------- */

static int sdo_specific(struct vx *v, const struct kz_json *o, const char *t)
{
	const struct kz_json *x;
	int64_t a, b;
	static const char *const named[] = { "attack-pattern", "campaign", "course-of-action", "identity", "incident",
					     "infrastructure", "intrusion-set", "threat-actor", "tool",
					     "vulnerability", NULL };
	if (in_list(named, t))
		return need_str(v, o, "name");
	if (strcmp(t, "indicator") == 0) {
		if (need_str(v, o, "pattern") || need_str(v, o, "pattern_type") ||
		    check_ts(v, o, "valid_from", true, false, &a) || check_ts(v, o, "valid_until", false, false, &b))
			return -1;
		if (kz_json_get(o, "valid_until") && b <= a)
			return bad(v, "valid_until: must be later than valid_from");
		if (strcmp(str_of(o, "pattern_type"), "stix") == 0) {
			const char *p = str_of(o, "pattern");
			if (stix_pattern_check(p, strlen(p), v->err, v->err_len))
				return -1;
		}
		return 0;
	}
	if (strcmp(t, "malware") == 0) {
		if (!(x = kz_json_get(o, "is_family")) || !kz_json_is_bool(x))
			return bad(v, "is_family: required, true or false");
		if (x->type == KZ_JSON_TRUE)
			return need_str(v, o, "name");
		return 0;
	}
	if (strcmp(t, "report") == 0)
		return need_str(v, o, "name") || check_ts(v, o, "published", true, false, NULL) ||
		       nonempty_list(v, o, "object_refs", true);
	if (strcmp(t, "grouping") == 0)
		return need_str(v, o, "context") || nonempty_list(v, o, "object_refs", true);
	if (strcmp(t, "note") == 0)
		return need_str(v, o, "content") || nonempty_list(v, o, "object_refs", true);
	if (strcmp(t, "opinion") == 0) {
		static const char *const ops[] = { "strongly-disagree", "disagree", "neutral", "agree", "strongly-agree", NULL };
		const char *op = str_of(o, "opinion");
		if (!op || !in_list(ops, op))
			return bad(v, "opinion: required, one of strongly-disagree, disagree, neutral, agree, strongly-agree");
		return nonempty_list(v, o, "object_refs", true);
	}
	if (strcmp(t, "observed-data") == 0) {
		if (check_ts(v, o, "first_observed", true, false, &a) || check_ts(v, o, "last_observed", true, false, &b) ||
		    int_range(v, o, "number_observed", 1, 999999999, true))
			return -1;
		if (b < a)
			return bad(v, "last_observed: must not be earlier than first_observed");
		if (!kz_json_get(o, "object_refs") && !kz_json_get(o, "objects"))
			return bad(v, "object_refs: required property is missing");
		return nonempty_list(v, o, "object_refs", false);
	}
	if (strcmp(t, "location") == 0) {
		const struct kz_json *la = kz_json_get(o, "latitude"), *lo = kz_json_get(o, "longitude");
		if (!kz_json_get(o, "region") && !kz_json_get(o, "country") && !(la && lo))
			return bad(v, "location: needs region, country, or latitude and longitude");
		if ((la && !lo) || (lo && !la))
			return bad(v, "latitude/longitude: both or neither");
		double d;
		if (la && (!kz_json_num(la, &d) || !(d >= -90 && d <= 90)))
			return bad(v, "latitude: must be a number from -90 to 90");
		if (lo && (!kz_json_num(lo, &d) || !(d >= -180 && d <= 180)))
			return bad(v, "longitude: must be a number from -180 to 180");
		return 0;
	}
	if (strcmp(t, "malware-analysis") == 0) {
		if (need_str(v, o, "product"))
			return -1;
		if (!kz_json_get(o, "result") && !kz_json_get(o, "analysis_sco_refs"))
			return bad(v, "malware-analysis: needs result or analysis_sco_refs");
		return 0;
	}
	return 0;
}

static int sro_specific(struct vx *v, const struct kz_json *o, const char *t)
{
	if (strcmp(t, "relationship") == 0) {
		if (need_str(v, o, "relationship_type"))
			return -1;
		const struct kz_json *s = kz_json_get(o, "source_ref"), *d = kz_json_get(o, "target_ref");
		if (!s)
			return bad(v, "source_ref: required property is missing");
		if (!d)
			return bad(v, "target_ref: required property is missing");
		return 0;
	}
	/* sighting (§5.2) */
	int64_t a, b;
	if (!kz_json_get(o, "sighting_of_ref"))
		return bad(v, "sighting_of_ref: required property is missing");
	if (int_range(v, o, "count", 0, 999999999, false) || check_ts(v, o, "first_seen", false, false, &a) ||
	    check_ts(v, o, "last_seen", false, false, &b))
		return -1;
	if (kz_json_get(o, "first_seen") && kz_json_get(o, "last_seen") && b < a)
		return bad(v, "last_seen: must not be earlier than first_seen");
	if (kz_json_get(o, "where_sighted_refs")) {
		const struct kz_json *x = kz_json_get(o, "where_sighted_refs");
		KZ_JSON_FOR(e, x) {
			const char *s = kz_json_str(e);
			if (s && strncmp(s, "identity--", 10) != 0 && strncmp(s, "location--", 10) != 0)
				return bad(v, "where_sighted_refs: must reference identity or location objects");
		}
	}
	return 0;
}

static int sco_specific(struct vx *v, const struct kz_json *o, const char *t)
{
	static const char *const valued[] = { "domain-name", "email-addr", "ipv4-addr", "ipv6-addr", "mac-addr", "url", NULL };
	if (in_list(valued, t))
		return need_str(v, o, "value");
	if (strcmp(t, "autonomous-system") == 0)
		return int_range(v, o, "number", 0, 4294967295LL, true);
	if (strcmp(t, "directory") == 0)
		return need_str(v, o, "path");
	if (strcmp(t, "mutex") == 0 || strcmp(t, "software") == 0)
		return need_str(v, o, "name");
	if (strcmp(t, "file") == 0 && !kz_json_get(o, "hashes") && !kz_json_get(o, "name"))
		return bad(v, "file: needs hashes or name");
	if (strcmp(t, "email-message") == 0 && !kz_json_is_bool(kz_json_get(o, "is_multipart")))
		return bad(v, "is_multipart: required, true or false");
	if (strcmp(t, "network-traffic") == 0)
		return nonempty_list(v, o, "protocols", true);
	return 0;
}

static int meta_specific(struct vx *v, const struct kz_json *o, const char *t)
{
	if (strcmp(t, "marking-definition") == 0) {
		if (kz_json_get(o, "modified"))
			return bad(v, "modified: marking definitions cannot be versioned (STIX 2.1 §7.2.1)");
		const struct kz_json *dt = kz_json_get(o, "definition_type"), *d = kz_json_get(o, "definition");
		if (!kz_json_get(o, "extensions") && !(dt && d))
			return bad(v, "marking-definition: needs definition_type and definition, or extensions");
		if ((dt && !KZ_IS_STR(dt)) || (d && !KZ_IS_OBJ(d)))
			return bad(v, "definition: definition_type must be a string and definition an object");
		return 0;
	}
	if (strcmp(t, "language-content") == 0) {
		if (!kz_json_get(o, "object_ref"))
			return bad(v, "object_ref: required property is missing");
		if (check_ts(v, o, "object_modified", false, true, NULL))
			return -1;
		if (!KZ_IS_OBJ(kz_json_get(o, "contents")))
			return bad(v, "contents: required, a dictionary");
		return 0;
	}
	/* extension-definition (§7.3) */
	if (need_str(v, o, "name") || need_str(v, o, "schema") || need_str(v, o, "version"))
		return -1;
	return nonempty_list(v, o, "extension_types", true);
}

int stix_validate(const struct kz_json *o, const struct stix_opts *opts, struct stix_info *info, char *err, size_t err_len)
{
	struct vx v = { err, err_len, opts, info };
	memset(info, 0, sizeof *info);
	info->created_us = INT64_MIN;
	if (!KZ_IS_OBJ(o))
		return bad(&v, "not a JSON object");
	const struct kz_json *tj = kz_json_get(o, "type");
	if (!tj)
		return bad(&v, "type: required property is missing");
	const char *t = kz_json_str(tj);
	if (!t || !type_ok(t, strlen(t)))
		return bad(&v, "type: must be 3 to 250 characters of a-z, 0-9 and '-' (STIX 2.1 §3.1)");
	if (strcmp(t, "bundle") == 0)
		return bad(&v, "type: a bundle is not an object: post its objects");
	snprintf(info->type, sizeof info->type, "%s", t);
	info->kind = in_list(sdo_types, t) ? STIX_SDO
		     : in_list(sro_types, t) ? STIX_SRO
		     : in_list(sco_types, t) ? STIX_SCO
		     : in_list(meta_types, t) ? STIX_META
					    : STIX_CUSTOM_OBJECT;
	if (info->kind == STIX_CUSTOM_OBJECT) {
		if (!opts->allow_custom)
			return bad(&v, "type: \"%s\" is not a STIX 2.1 type and this collection does not allow custom "
				       "objects", t);
		info->custom = true;
	}
	const struct kz_json *idj = kz_json_get(o, "id");
	if (!idj)
		return bad(&v, "id: required property is missing");
	const char *id = kz_json_str(idj);
	size_t tl;
	if (!id || !ident_ok(id, &tl, info->uuid))
		return bad(&v, "id: must be an identifier type--UUID (RFC 4122), got %.80s%s", id ? "\"" : "",
			   id ? id : "a non-string");
	if (tl != strlen(t) || memcmp(id, t, tl) != 0)
		return bad(&v, "id: \"%.80s\" does not start with the object's type \"%s--\"", id, t);
	snprintf(info->id, sizeof info->id, "%s", id);
	const struct kz_json *sv = kz_json_get(o, "spec_version");
	if (sv && (!KZ_IS_STR(sv) || strcmp(kz_json_str(sv), "2.1") != 0))
		return bad(&v, "spec_version: must be \"2.1\"%s", KZ_IS_STR(sv) && strcmp(kz_json_str(sv), "2.0") == 0
									 ? " (STIX 2.0 objects are not accepted)"
									 : "");
	if (!sv && info->kind != STIX_SCO)
		return bad(&v, "spec_version: required property is missing (STIX 2.1 objects carry \"2.1\")");
	if (prop_names(&v, o))
		return -1;
	if (info->kind != STIX_SCO) {
		if (check_ts(&v, o, "created", true, true, &info->created_us))
			return -1;
		bool mod_required = strcmp(t, "marking-definition") != 0;
		if (mod_required) {
			if (check_ts(&v, o, "modified", true, true, &info->modified_us))
				return -1;
			if (info->modified_us < info->created_us)
				return bad(&v, "modified: must not be earlier than created");
		} else
			info->modified_us = info->created_us;
		const struct kz_json *cb = kz_json_get(o, "created_by_ref");
		if (cb) {
			if (check_ref(&v, "created_by_ref", cb, "identity"))
				return -1;
			snprintf(info->created_by_ref, sizeof info->created_by_ref, "%s", kz_json_str(cb));
		}
	} else
		info->modified_us = INT64_MIN;
	if (common(&v, o) || markings(&v, o) || walk_refs(&v, o, 0))
		return -1;
	int rc = 0;
	switch (info->kind) {
	case STIX_SDO: rc = sdo_specific(&v, o, t); break;
	case STIX_SRO: rc = sro_specific(&v, o, t); break;
	case STIX_SCO: rc = sco_specific(&v, o, t); break;
	case STIX_META: rc = meta_specific(&v, o, t); break;
	default: break;
	}
	return rc ? -1 : 0;
}
