/* detect_sighting.c — matches into STIX 2.1 sightings (docs/DETECTION.md "Sightings"): the
 * matches of one indicator on one observed value are one sighting, with count, first_seen and
 * last_seen; flushed, each is a bundle of
 *
 *   sighting       sighting_of_ref the indicator, observed_data_refs [the observed-data],
 *                  count, first_seen, last_seen, description (which field of which log);
 *   observed-data  first_observed, last_observed, number_observed, object_refs [the SCO];
 *   the SCO        ipv4-addr, ipv6-addr, domain-name, url, email-addr, file or
 *                  x509-certificate, its id derived as STIX 2.1 §2.9 says (UUIDv5 of its
 *                  contributing properties), so that another producer names it the same;
 *   the indicator  only for a Zeek intel line (which has no STIX object of its own).
 *
 * Sighting and observed-data ids are UUIDv5s of the indicator and the SCO: the same sighting
 * flushed again is a new version of the same objects (modified = last_seen). */
#include "services/detect/detect_internal.h"
#include "base/kz_buf.h"
#include "base/kz_json.h"
#include "base/kz_time.h"
#include "crypto/kz_crypto.h"
#include "services/stix/stix.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void detect_uuid5(const char *name, size_t n, const char *prefix, char *out)
{
	static const uint8_t ns[16] = { 0x00, 0xab, 0xed, 0xb4, 0xaa, 0x42, 0x55, 0xc7,
					0x8c, 0x2b, 0x2b, 0x0e, 0x3f, 0x5e, 0x6a, 0x4c };
	uint8_t buf[16 + 4096], h[20];
	if (n > sizeof buf - 16)
		n = sizeof buf - 16;
	memcpy(buf, ns, 16);
	memcpy(buf + 16, name, n);
	kz_sha1(buf, 16 + n, h);
	h[6] = (uint8_t)((h[6] & 0x0f) | 0x50);
	h[8] = (uint8_t)((h[8] & 0x3f) | 0x80);
	size_t pl = strlen(prefix);
	memcpy(out, prefix, pl);
	kz_uuid_format(h, out + pl);
}

struct sg {
	char *key;                  /* indicator id | SCO id */
	char ind[64], sco[300], field[48], source[64];
	char *sco_json, *label, *author, *ind_pattern;
	int64_t first, last;
	int64_t created, modified; /* versioned: the first and the last flush */
	uint64_t count;
	bool dirty, flushed;
};

struct detect_sightings {
	char sensor[256];
	size_t max;
	bool versioned;
	struct sg **v;
	size_t n, cap;
	struct stab keys; /* key -> index in v + 1 */
};

struct detect_sightings *detect_sightings_new(const char *sensor_identity)
{
	struct detect_sightings *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	snprintf(s->sensor, sizeof s->sensor, "%s", sensor_identity ? sensor_identity : "");
	kz_buf_init(&s->keys.arena, 0);
	return s;
}

void detect_sightings_cap(struct detect_sightings *s, size_t max) { s->max = max; }
void detect_sightings_versioned(struct detect_sightings *s, bool versioned) { s->versioned = versioned; }
size_t detect_sightings_count(const struct detect_sightings *s) { return s->n; }

static void forget(struct detect_sightings *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i]->key), free(s->v[i]->sco_json), free(s->v[i]->label), free(s->v[i]->ind_pattern);
		free(s->v[i]->author), free(s->v[i]);
	}
	free(s->keys.e);
	kz_buf_cleanup(&s->keys.arena);
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
	memset(&s->keys, 0, sizeof s->keys);
	kz_buf_init(&s->keys.arena, 0);
}

void detect_sightings_free(struct detect_sightings *s)
{
	if (!s)
		return;
	forget(s);
	kz_buf_cleanup(&s->keys.arena);
	free(s);
}

/* The observed value as its SCO: type, contributing properties (canonical JSON: keys in
 * order, no white space) and the object's JSON. 0; -1 when it cannot be one. */
static int sco_of(const struct detect_obs *o, char *id, size_t id_cap, char **json)
{
	struct kz_buf b, c;
	kz_buf_init(&b, 0), kz_buf_init(&c, 0);
	char v[2100];
	if (o->len >= sizeof v)
		return -1;
	memcpy(v, o->value, o->len);
	v[o->len] = 0;
	const char *type, *algo = NULL;
	switch (o->kind) {
	case DETECT_IP:
		type = strchr(v, ':') ? "ipv6-addr" : "ipv4-addr";
		break;
	case DETECT_DOMAIN: {
		size_t l;
		if (detect_domain_norm(o->value, o->len, v, sizeof v, &l))
			return -1;
		type = "domain-name";
		break;
	}
	case DETECT_URL:
		type = "url";
		break;
	case DETECT_EMAIL:
		type = "email-addr";
		break;
	default:
		type = o->kind == DETECT_CERT_SHA1 || o->kind == DETECT_CERT_SHA256 ? "x509-certificate" : "file";
		algo = o->kind == DETECT_MD5 ? "MD5" : o->kind == DETECT_SHA1 || o->kind == DETECT_CERT_SHA1 ? "SHA-1" : "SHA-256";
		size_t k = 0;
		for (size_t i = 0; v[i]; i++)
			if (v[i] != ':')
				v[k++] = (char)(v[i] >= 'A' && v[i] <= 'F' ? v[i] + 32 : v[i]);
		v[k] = 0;
	}
	int rc = 0;
	if (algo)
		rc = kz_buf_appendf(&c, "{\"hashes\":{\"%s\":", algo) || kz_json_put_str(&c, v) ||
		     kz_buf_append(&c, "}}", 2);
	else
		rc = kz_buf_append(&c, "{\"value\":", 9) || kz_json_put_str(&c, v) || kz_buf_append(&c, "}", 1);
	char prefix[40];
	snprintf(prefix, sizeof prefix, "%s--", type);
	if (rc || strlen(prefix) + 37 > id_cap) {
		kz_buf_cleanup(&c);
		return -1;
	}
	detect_uuid5((const char *)kz_buf_head(&c), c.len, prefix, id);
	rc = kz_buf_appendf(&b, "{\"type\":\"%s\",\"spec_version\":\"2.1\",\"id\":\"%s\",", type, id);
	if (algo)
		rc = rc || kz_buf_appendf(&b, "\"hashes\":{\"%s\":", algo) || kz_json_put_str(&b, v) ||
		     kz_buf_append(&b, "}}", 2);
	else
		rc = rc || kz_buf_append(&b, "\"value\":", 8) || kz_json_put_str(&b, v) || kz_buf_append(&b, "}", 1);
	rc = rc || kz_buf_append(&b, "", 1);
	kz_buf_cleanup(&c);
	if (rc) {
		kz_buf_cleanup(&b);
		return -1;
	}
	*json = (char *)b.data; /* off is 0: nothing was consumed */
	return 0;
}

static struct sg *find(struct detect_sightings *s, const char *key)
{
	uint32_t *slot = detect_stab_slot(&s->keys, key, strlen(key), true);
	if (!slot)
		return NULL;
	if (*slot)
		return s->v[*slot - 1];
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 64;
		struct sg **nv = realloc(s->v, nc * sizeof *nv);
		if (!nv)
			return NULL; /* the key stays with no value: found as new next time */
		s->v = nv, s->cap = nc;
	}
	struct sg *g = calloc(1, sizeof *g);
	if (!g || !(g->key = strdup(key))) {
		free(g);
		return NULL;
	}
	s->v[s->n++] = g;
	*slot = (uint32_t)s->n;
	return g;
}

void detect_sightings_add(struct detect_sightings *s, const struct detect_match *m, const char *label)
{
	char sco[300], key[1500];
	char *json = NULL;
	if (sco_of(m->obs, sco, sizeof sco, &json))
		return;
	if (!label)
		label = "";
	if ((size_t)snprintf(key, sizeof key, "%s|%s|%s", m->ind->id, sco, label) >= sizeof key) {
		free(json);
		return;
	}
	struct sg *g = find(s, key);
	if (!g) {
		free(json);
		return;
	}
	if (!g->count) {
		snprintf(g->ind, sizeof g->ind, "%s", m->ind->id);
		snprintf(g->sco, sizeof g->sco, "%s", sco);
		snprintf(g->field, sizeof g->field, "%s", m->obs->field ? m->obs->field : "");
		snprintf(g->source, sizeof g->source, "%s", m->ind->source ? m->ind->source : "");
		g->sco_json = json;
		g->label = strdup(label);
		g->author = strdup(m->ind->author ? m->ind->author : "");
		g->ind_pattern = m->ind->pattern[0] ? strdup(m->ind->pattern) : NULL;
		g->first = g->last = m->ts_us;
	} else {
		free(json);
	}
	g->count++;
	if (m->ts_us && (m->ts_us < g->first || !g->first))
		g->first = m->ts_us;
	if (m->ts_us > g->last)
		g->last = m->ts_us;
	g->dirty = true;
}

static int put(struct detect_sightings *s, const struct sg *g, struct kz_buf *b)
{
	char sid[80], oid[80], f[64], l[64], c[64], md[64], name[1500];
	/* a labelled sighting is its own object: one id never carries two labels */
	const char *lsep = g->label && g->label[0] ? "|" : "", *lab = g->label ? g->label : "";
	snprintf(name, sizeof name, "kizuna-sighting|%s|%s%s%s", g->ind, g->sco, lsep, lab);
	detect_uuid5(name, strlen(name), "sighting--", sid);
	snprintf(name, sizeof name, "kizuna-observed|%s|%s%s%s", g->ind, g->sco, lsep, lab);
	detect_uuid5(name, strlen(name), "observed-data--", oid);
	stix_format_us(g->first, f);
	stix_format_us(g->last > g->first ? g->last : g->first, l);
	stix_format_us(s->versioned ? g->created : g->first, c);
	stix_format_us(s->versioned ? g->modified : (g->last > g->first ? g->last : g->first), md);
	char bid[80];
	snprintf(name, sizeof name, "kizuna-bundle|%s|%s|%lld", g->ind, g->sco, (long long)g->last);
	detect_uuid5(name, strlen(name), "bundle--", bid);
	int rc = kz_buf_appendf(b, "{\"type\":\"bundle\",\"id\":\"%s\",\"objects\":[", bid);
	rc = rc || kz_buf_appendf(b, "{\"type\":\"sighting\",\"spec_version\":\"2.1\",\"id\":\"%s\",\"created\":\"%s\","
				     "\"modified\":\"%s\",\"first_seen\":\"%s\",\"last_seen\":\"%s\",\"count\":%llu,",
				  sid, c, md, f, l, (unsigned long long)(g->count > 999999999 ? 999999999 : g->count));
	rc = rc || kz_buf_appendf(b, "\"sighting_of_ref\":\"%s\",\"observed_data_refs\":[\"%s\"],\"description\":", g->ind,
				  oid);
	char desc[1000];
	snprintf(desc, sizeof desc, "%s matched in the field %s of a log seen by %s", g->sco, g->field,
		 s->sensor[0] ? s->sensor : "kizuna");
	rc = rc || kz_json_put_str(b, desc) || kz_buf_append(b, "},", 2);
	rc = rc || kz_buf_appendf(b, "{\"type\":\"observed-data\",\"spec_version\":\"2.1\",\"id\":\"%s\",\"created\":\"%s\","
				     "\"modified\":\"%s\",\"first_observed\":\"%s\",\"last_observed\":\"%s\","
				     "\"number_observed\":%llu,\"object_refs\":[\"%s\"]},",
				  oid, c, md, f, l, (unsigned long long)(g->count > 999999999 ? 999999999 : g->count), g->sco);
	rc = rc || kz_buf_append(b, g->sco_json, strlen(g->sco_json));
	if (g->ind_pattern) {
		char from[64];
		stix_format_us(0, from);
		rc = rc || kz_buf_appendf(b, ",{\"type\":\"indicator\",\"spec_version\":\"2.1\",\"id\":\"%s\",\"created\":\"%s\","
					     "\"modified\":\"%s\",\"name\":",
					  g->ind, from, from);
		snprintf(desc, sizeof desc, "Zeek intel: %s", g->source);
		rc = rc || kz_json_put_str(b, desc) ||
		     kz_buf_append(b, ",\"pattern_type\":\"stix\",\"pattern\":", 33) || kz_json_put_str(b, g->ind_pattern) ||
		     kz_buf_appendf(b, ",\"valid_from\":\"%s\"}", from);
	}
	rc = rc || kz_buf_append(b, "]}", 2);
	return rc;
}

size_t detect_sightings_flush(struct detect_sightings *s, detect_sighting_fn fn, void *ctx)
{
	size_t n = 0;
	struct kz_buf b;
	kz_buf_init(&b, 0);
	/* versioned: each flush a newer version than the last, by the wall clock (STIX
	 * timestamps in microseconds, strictly increasing per object) */
	int64_t now = s->versioned ? (int64_t)(kz_now_wall_ns() / 1000) : 0;
	for (size_t i = 0; i < s->n; i++) {
		struct sg *g = s->v[i];
		if (!g->dirty)
			continue;
		if (s->versioned) {
			g->modified = g->flushed && now <= g->modified ? g->modified + 1 : now;
			if (!g->flushed)
				g->created = g->modified;
		}
		kz_buf_reset(&b);
		if (put(s, g, &b))
			continue;
		struct detect_sighting_out o = { (const char *)kz_buf_head(&b), b.len, g->label, g->author, !g->flushed };
		fn(ctx, &o);
		g->dirty = false;
		g->flushed = true;
		n++;
	}
	kz_buf_cleanup(&b);
	if (s->max && s->n > s->max)
		forget(s); /* the next hit of each starts a new count (a newer version of the same ids) */
	return n;
}
