/* detect_match.c — matching one event's observables against the index (docs/DETECTION.md
 * "The index"): addresses by each prefix length present, names by suffix, URLs and e-mail
 * by their normal form, hashes by their bytes, MATCHES expressions in one Hyperscan pass;
 * a conjunction matches when all its comparisons hold in the event; each indicator is
 * reported once per event, if valid at the event's time. */
#include "services/detect/detect_internal.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const uint8_t detect_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Compiles the kind's expressions into one database (after a change). 0; -1 when they do
 * not compile together (then none of them matches until the next change). */
int detect_rx_prepare(struct detect_index *x, int kind)
{
	struct rxset *r = &x->rx[kind];
	if (!r->dirty)
		return r->db ? 0 : -1;
	r->dirty = false;
	hs_free_database(r->db);
	r->db = NULL;
	free(r->heads);
	r->heads = NULL;
	const char **ex = malloc(r->set.n * sizeof *ex);
	unsigned *ids = malloc(r->set.n * sizeof *ids), *flags = malloc(r->set.n * sizeof *flags);
	char *text = malloc(r->set.arena.len + r->set.n);
	r->heads = malloc(r->set.n * sizeof *r->heads);
	int rc = -1;
	if (ex && ids && flags && text && r->heads) {
		unsigned k = 0;
		size_t at = 0;
		for (uint32_t i = 0; i < r->set.cap; i++) {
			const struct sent *e = &r->set.e[i];
			if (!e->val)
				continue;
			memcpy(text + at, kz_buf_head(&r->set.arena) + e->off, e->len);
			text[at + e->len] = 0;
			ex[k] = text + at;
			at += e->len + 1;
			ids[k] = k;
			flags[k] = HS_FLAG_SINGLEMATCH;
			r->heads[k] = e->val;
			k++;
		}
		hs_compile_error_t *err = NULL;
		if (hs_compile_multi(ex, flags, ids, k, HS_MODE_BLOCK, NULL, &r->db, &err) == HS_SUCCESS &&
		    hs_alloc_scratch(r->db, &x->scratch) == HS_SUCCESS)
			rc = 0;
		hs_free_compile_error(err);
	}
	free(ex), free(ids), free(flags), free(text);
	return rc;
}

/* ---------- matching ---------- */

#define MAX_HITS 64

struct ev {
	const struct detect_index *x;
	const struct detect_obs *o;
	int64_t ts;
	detect_match_fn fn;
	void *ctx;
	size_t matches;
	struct {
		uint32_t term, mask;
	} hits[MAX_HITS];
	unsigned n_hits;
	uint32_t done[MAX_HITS]; /* indicators already reported for this event */
	unsigned n_done;
};

/* The matched value as a Zeek intel line had it (normalised): the address, the name, the
 * URL, the e-mail address, the hash in lower case. */
static void canon(const struct detect_obs *o, char *out, size_t cap)
{
	size_t n;
	out[0] = 0;
	if (o->kind == DETECT_IP) {
		uint8_t a[16];
		unsigned pl;
		if (detect_ip_parse(o->value, o->len, a, &pl) == 0) {
			static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
			if (!memcmp(a, mapped, 12))
				inet_ntop(AF_INET, a + 12, out, (socklen_t)cap);
			else
				inet_ntop(AF_INET6, a, out, (socklen_t)cap);
		}
	} else if (o->kind == DETECT_DOMAIN) {
		(void)detect_domain_norm(o->value, o->len, out, cap, &n);
	} else if (o->kind == DETECT_URL) {
		(void)detect_url_norm(o->value, o->len, out, cap, &n);
	} else {
		size_t k = 0;
		for (size_t i = 0; i < o->len && k + 1 < cap; i++)
			if (o->value[i] != ':' || o->kind == DETECT_EMAIL)
				out[k++] = (char)tolower((unsigned char)o->value[i]);
		out[k] = 0;
	}
}

/* A Zeek intel line as a STIX indicator: its id (a UUIDv5 of its file and value, so the same
 * line gets the same id in every run) and its pattern. */
static void zeek_indicator(struct detect_indicator_info *info, const char *source, const char *value, int kind)
{
	char name[2400];
	snprintf(name, sizeof name, "zeek-intel|%s|%s", source, value);
	detect_uuid5(name, strlen(name), "indicator--", info->id);
	const char *path = kind == DETECT_IP ? (strchr(value, ':') ? "ipv6-addr:value" : "ipv4-addr:value")
			   : kind == DETECT_DOMAIN     ? "domain-name:value"
			   : kind == DETECT_URL	       ? "url:value"
			   : kind == DETECT_EMAIL      ? "email-addr:value"
			   : kind == DETECT_MD5	       ? "file:hashes.MD5"
			   : kind == DETECT_SHA1       ? "file:hashes.'SHA-1'"
			   : kind == DETECT_SHA256     ? "file:hashes.'SHA-256'"
			   : kind == DETECT_CERT_SHA1  ? "x509-certificate:hashes.'SHA-1'"
						       : "x509-certificate:hashes.'SHA-256'";
	size_t k = (size_t)snprintf(info->pattern, sizeof info->pattern, "[%s = '", path);
	for (const char *q = value; *q && k + 4 < sizeof info->pattern; q++) {
		if (*q == '\\' || *q == '\'')
			info->pattern[k++] = '\\';
		info->pattern[k++] = *q;
	}
	snprintf(info->pattern + k, sizeof info->pattern - k, "']");
}

static void emit(struct ev *e, uint32_t i)
{
	const struct ind *in = &e->x->inds[i];
	const struct smeta *sm = in->flags & I_ZEEK ? NULL : &e->x->smeta[in->meta];
	if ((in->flags & I_DEAD) || (sm && e->ts && (e->ts < sm->from || e->ts >= detect_until(e->x, i))))
		return;
	for (unsigned k = 0; k < e->n_done; k++)
		if (e->done[k] == i)
			return;
	if (e->n_done < MAX_HITS)
		e->done[e->n_done++] = i;
	struct detect_indicator_info info;
	info.pattern[0] = 0;
	const struct pair *pr = &e->x->pairs[in->ls];
	if (in->flags & I_ZEEK) {
		char v[DETECT_VALUE_MAX];
		if (in->meta != NO_META)
			snprintf(v, sizeof v, "%s", (const char *)kz_buf_head(&e->x->zvals) + in->meta);
		else
			canon(e->o, v, sizeof v);
		zeek_indicator(&info, e->x->strs[pr->source], v, in->kind);
	} else { /* by hand, not snprintf: it was felt per match */
		memcpy(info.id, "indicator--", 11);
		kz_uuid_format(sm->uuid, info.id + 11);
	}
	info.valid_from_us = sm ? sm->from : INT64_MIN;
	info.valid_until_us = sm ? detect_until(e->x, i) : INT64_MAX;
	info.label = e->x->strs[pr->label];
	info.source = e->x->strs[pr->source];
	info.author = e->x->strs[pr->author];
	struct detect_match m = { .ind = &info, .obs = e->o, .ts_us = e->ts };
	e->fn(e->ctx, &m);
	e->matches++;
}

static void walk(struct ev *e, uint32_t head, bool full)
{
	const struct detect_index *x = e->x;
	if (head & DIRECT) {
		unsigned role = (head >> D_ROLE_SHIFT) & 3;
		if ((!role || role == e->o->role) && (!(head & D_EXACT) || full))
			emit(e, head & D_IND);
		return;
	}
	for (uint32_t p = head; p; p = x->posts[p - 1].next) {
		const struct posting *po = &x->posts[p - 1];
		if ((po->role && po->role != e->o->role) || ((po->flags & P_EXACT) && !full))
			continue;
		if (po->flags & P_SINGLE) {
			emit(e, po->ref);
			continue;
		}
		const struct term *t = &x->terms[po->ref];
		unsigned k = 0;
		while (k < e->n_hits && e->hits[k].term != po->ref)
			k++;
		if (k == e->n_hits) {
			if (e->n_hits == MAX_HITS)
				continue;
			e->hits[e->n_hits].term = po->ref;
			e->hits[e->n_hits++].mask = 0;
		}
		e->hits[k].mask |= 1u << po->atom;
		if (e->hits[k].mask == (t->n_atoms >= 32 ? UINT32_MAX : (1u << t->n_atoms) - 1))
			emit(e, t->ind);
	}
}

static uint32_t lookup_s(const struct stab *t, const char *k, size_t n)
{
	uint32_t *v = t->n ? detect_stab_slot((struct stab *)t, k, n, false) : NULL;
	return v ? *v : 0;
}

static int on_rx(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
	(void)from, (void)to, (void)flags;
	struct ev *e = ctx;
	walk(e, e->x->rx[e->o->kind].heads[id], true);
	return 0;
}

/* The kind's MATCHES expressions over the observed text as it is. */
static void match_rx(struct ev *e)
{
	struct detect_index *x = (struct detect_index *)e->x; /* compiling is the index's own business */
	const struct detect_obs *o = e->o;
	if (o->kind >= DETECT_KINDS || !x->rx[o->kind].set.n || o->len > UINT32_MAX || detect_rx_prepare(x, o->kind))
		return;
	(void)hs_scan(x->rx[o->kind].db, o->value, (unsigned)o->len, 0, x->scratch, on_rx, e);
}

size_t detect_match_event(const struct detect_index *x, const struct detect_obs *obs, size_t n, int64_t ts_us,
			  detect_match_fn fn, void *ctx)
{
	struct ev e; /* not zeroed whole: hits and done are read only below their counts */
	e.x = x, e.o = NULL, e.ts = ts_us, e.fn = fn, e.ctx = ctx, e.matches = 0, e.n_hits = 0, e.n_done = 0;
	char buf[DETECT_VALUE_MAX];
	for (size_t i = 0; i < n; i++) {
		const struct detect_obs *o = &obs[i];
		e.o = o;
		match_rx(&e);
		size_t len;
		if (o->kind == DETECT_IP) {
			uint8_t k[16], m[16];
			unsigned pl;
			if ((!x->n_lens && !x->n_lens4) || detect_ip_parse(o->value, o->len, k, &pl))
				continue;
			if (!memcmp(k, detect_mapped, 12)) {
				uint32_t a4 = (uint32_t)k[12] << 24 | (uint32_t)k[13] << 16 | (uint32_t)k[14] << 8 | k[15];
				for (unsigned j = 0; j < x->n_lens4; j++) {
					unsigned l = x->lens4[j];
					uint32_t mk = l ? a4 & ~(uint32_t)0 << (32 - l) : 0;
					uint8_t b4[4] = { (uint8_t)(mk >> 24), (uint8_t)(mk >> 16), (uint8_t)(mk >> 8), (uint8_t)mk };
					uint32_t *v = detect_ftab_slot((struct ftab *)&x->ip4[l], b4, false);
					if (v && *v)
						walk(&e, *v, true);
				}
			}
			for (unsigned j = 0; j < x->n_lens; j++) { /* IPv6 networks (::/0 holds IPv4 too) */
				unsigned l = x->lens[j];
				memcpy(m, k, 16); /* the host bits cleared, a byte at a time */
				if (l % 8)
					m[l / 8] &= (uint8_t)(0xff00u >> (l % 8));
				memset(m + (l + 7) / 8, 0, 16 - (l + 7) / 8);
				uint32_t *v = detect_ftab_slot((struct ftab *)&x->ip[l], m, false);
				if (v && *v)
					walk(&e, *v, true);
			}
		} else if (o->kind == DETECT_DOMAIN) {
			const struct stab *t = &x->str[DETECT_DOMAIN];
			if (!t->n || detect_domain_norm(o->value, o->len, buf, sizeof buf, &len))
				continue;
			const char *s = buf;
			unsigned labels = 1;
			for (size_t j = 0; j < len; j++)
				labels += buf[j] == '.';
			for (int depth = 0; depth < 16 && s; depth++, labels--) { /* the name, then each parent */
				uint32_t h = x->domain_labels >> (labels < 31 ? labels : 31) & 1
						     ? lookup_s(t, s, len - (size_t)(s - buf))
						     : 0; /* no indicator has this many labels */
				if (h)
					walk(&e, h, s == buf);
				s = strchr(s, '.');
				if (s)
					s++;
			}
		} else if (o->kind == DETECT_URL || o->kind == DETECT_EMAIL) {
			const struct stab *t = &x->str[o->kind];
			if (!t->n)
				continue;
			if (o->kind == DETECT_URL) {
				if (detect_url_norm(o->value, o->len, buf, sizeof buf, &len))
					continue;
			} else {
				if (o->len >= sizeof buf)
					continue;
				for (size_t j = 0; j < o->len; j++)
					buf[j] = (char)tolower((unsigned char)o->value[j]);
				len = o->len;
			}
			uint32_t h = lookup_s(t, buf, len);
			if (h)
				walk(&e, h, true);
		} else if (o->kind >= DETECT_MD5 && o->kind < DETECT_KINDS) {
			struct detect_atom a;
			if (!x->hash[o->kind].n || detect_atom_set(&a, o->kind, 0, o->value, o->len))
				continue;
			uint32_t *v = detect_ftab_slot((struct ftab *)&x->hash[o->kind], a.key, false);
			if (v && *v)
				walk(&e, *v, true);
		}
	}
	return e.matches;
}
