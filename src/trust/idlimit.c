/* idlimit.c — per-identity connection caps and token buckets (idlimit.h). */
#include "trust/idlimit.h"
#include "base/kz_err.h"
#include "trust/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Built-in defaults: generous for one busy sensor or service, small against one identity
 * opening thousands of connections or flooding the node (docs/SECURITY.md). */
static const struct kz_idlimit_rule builtin = { "default", 256, 100000, 256ull << 20, 2000 };

static int parse_size(const char *v, uint64_t *out)
{
	char *end;
	unsigned long long x = strtoull(v, &end, 10);
	if (end == v)
		return -1;
	uint64_t m = 1;
	if (*end == 'K' || *end == 'k')
		m = 1ull << 10, end++;
	else if (*end == 'M' || *end == 'm')
		m = 1ull << 20, end++;
	else if (*end == 'G' || *end == 'g')
		m = 1ull << 30, end++;
	if (*end)
		return -1;
	*out = (uint64_t)x * m;
	return 0;
}

int kz_idlimit_rule_parse(const char *text, struct kz_idlimit_rule *r, const char **why)
{
	char buf[512];
	if (strlen(text) >= sizeof buf) {
		*why = "limits.identity: too long";
		return KZ_EINVAL;
	}
	snprintf(buf, sizeof buf, "%s", text);
	char *sv = NULL, *tok = strtok_r(buf, " \t", &sv);
	if (!tok || strlen(tok) >= sizeof r->who) {
		*why = "limits.identity: expected WHO (default, user, sensor, service, node or role=NAME) and limits";
		return KZ_EINVAL;
	}
	*r = builtin;
	snprintf(r->who, sizeof r->who, "%s", tok);
	if (strcmp(tok, "default") && strcmp(tok, "user") && strcmp(tok, "sensor") && strcmp(tok, "service") &&
	    strcmp(tok, "node") && strncmp(tok, "role=", 5)) {
		*why = "limits.identity: WHO is default, user, sensor, service, node or role=NAME";
		return KZ_EINVAL;
	}
	while ((tok = strtok_r(NULL, " \t", &sv)) != NULL) {
		char *eq = strchr(tok, '=');
		uint64_t v;
		if (!eq || parse_size(eq + 1, &v)) {
			*why = "limits.identity: expected NAME=NUMBER (connections, publish_rate, publish_bytes, https_rate)";
			return KZ_EINVAL;
		}
		*eq = 0;
		if (strcmp(tok, "connections") == 0 && v <= UINT32_MAX)
			r->connections = (uint32_t)v;
		else if (strcmp(tok, "publish_rate") == 0 && v <= UINT32_MAX)
			r->publish_rate = (uint32_t)v;
		else if (strcmp(tok, "publish_bytes") == 0)
			r->publish_bytes = v;
		else if (strcmp(tok, "https_rate") == 0 && v <= UINT32_MAX)
			r->https_rate = (uint32_t)v;
		else {
			*why = "limits.identity: unknown limit (connections, publish_rate, publish_bytes, https_rate) or too large";
			return KZ_EINVAL;
		}
	}
	return KZ_OK;
}

int kz_idlimits_init(struct kz_idlimits *l, const struct kz_idlimit_rule *rules, size_t n, uint32_t max_ids)
{
	memset(l, 0, sizeof *l);
	pthread_mutex_init(&l->lock, NULL);
	l->max_ids = max_ids ? max_ids : 65536;
	l->cap = 1024; /* doubled as identities come (kz_idlimits_get) */
	l->slot = calloc(l->cap, sizeof *l->slot);
	l->rules = calloc(n + 1, sizeof *l->rules);
	if (!l->slot || !l->rules)
		return KZ_ENOMEM;
	l->rules[0] = builtin;
	l->n_rules = 1;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(rules[i].who, "default") == 0)
			l->rules[0] = rules[i];
		else
			l->rules[l->n_rules++] = rules[i];
	}
	return KZ_OK;
}

void kz_idlimits_cleanup(struct kz_idlimits *l)
{
	for (uint32_t i = 0; l->slot && i < l->cap; i++) {
		struct kz_idlimit_entry *e = atomic_load(&l->slot[i]);
		if (!e)
			continue;
		pthread_mutex_destroy(&e->lock);
		free(e->id);
		free(e);
	}
	free(l->slot);
	free(l->rules);
	pthread_mutex_destroy(&l->lock);
}

/* The rule for an identity: the first role rule it has a role for, else its kind's, else
 * the default. */
static struct kz_idlimit_rule resolve(const struct kz_idlimits *l, const char *id, const struct kz_subject *s)
{
	const struct kz_identity *ident = s ? s->ident : NULL;
	for (size_t i = 1; ident && i < l->n_rules; i++)
		if (strncmp(l->rules[i].who, "role=", 5) == 0)
			for (uint32_t k = 0; k < ident->n_roles; k++)
				if (strcmp(l->rules[i].who + 5, ident->roles[k]) == 0)
					return l->rules[i];
	char kind[16];
	if (kz_spiffe_kind(id, kind, sizeof kind))
		for (size_t i = 1; i < l->n_rules; i++)
			if (strcmp(l->rules[i].who, kind) == 0)
				return l->rules[i];
	return l->rules[0];
}

static uint32_t hash_of(const char *id)
{
	uint32_t h = 2166136261u; /* FNV-1a: ids come from verified certificates, not from peers' choice */
	for (const char *p = id; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h;
}

/* Doubles the table (under l->lock); entries move, readers may briefly miss and insert
 * (the insert path re-checks under the lock). */
static int grow(struct kz_idlimits *l)
{
	uint32_t ncap = l->cap * 2;
	_Atomic(struct kz_idlimit_entry *) *ns = calloc(ncap, sizeof *ns);
	if (!ns)
		return KZ_ENOMEM;
	for (uint32_t i = 0; i < l->cap; i++) {
		struct kz_idlimit_entry *e = atomic_load(&l->slot[i]);
		if (!e)
			continue;
		uint32_t j = hash_of(e->id) & (ncap - 1);
		while (atomic_load(&ns[j]))
			j = (j + 1) & (ncap - 1);
		atomic_store(&ns[j], e);
	}
	free(l->slot); /* every access holds l->lock */
	l->slot = ns;
	l->cap = ncap;
	return KZ_OK;
}

struct kz_idlimit_entry *kz_idlimits_get(struct kz_idlimits *l, const char *id, const struct kz_subject *s)
{
	if (!id)
		id = "";
	pthread_mutex_lock(&l->lock);
	uint32_t mask = l->cap - 1, i = hash_of(id) & mask;
	struct kz_idlimit_entry *e;
	while ((e = atomic_load(&l->slot[i])) != NULL && strcmp(e->id, id) != 0)
		i = (i + 1) & mask;
	if (!e && l->n >= l->max_ids) { /* over the cap: everyone else shares one entry */
		id = "(other identities)";
		i = hash_of(id) & mask;
		while ((e = atomic_load(&l->slot[i])) != NULL && strcmp(e->id, id) != 0)
			i = (i + 1) & mask;
	}
	if (!e && (e = calloc(1, sizeof *e)) != NULL) {
		e->id = strdup(id);
		pthread_mutex_init(&e->lock, NULL);
		e->lim = resolve(l, id, s);
		if (!e->id) {
			free(e);
			e = NULL;
		} else {
			atomic_store(&l->slot[i], e);
			l->n++;
			if (l->n * 2 > l->cap)
				(void)grow(l); /* out of memory: the table stays half full at most... until the cap */
		}
	}
	pthread_mutex_unlock(&l->lock);
	return e;
}

bool kz_idlimit_connect(struct kz_idlimit_entry *e)
{
	if (!e)
		return true;
	pthread_mutex_lock(&e->lock);
	bool ok = !e->lim.connections || e->conns < e->lim.connections;
	if (ok)
		e->conns++;
	else
		e->unreported++;
	pthread_mutex_unlock(&e->lock);
	if (!ok)
		atomic_fetch_add(&e->throttled[KZ_IDL_CONN], 1);
	return ok;
}

void kz_idlimit_disconnected(struct kz_idlimit_entry *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	if (e->conns)
		e->conns--;
	pthread_mutex_unlock(&e->lock);
}

static double rate_of(const struct kz_idlimit_entry *e, enum kz_idlimit_kind kind)
{
	return kind == KZ_IDL_PUBLISH ? e->lim.publish_rate
	       : kind == KZ_IDL_BYTES ? (double)e->lim.publish_bytes
				      : e->lim.https_rate;
}

/* Refills bucket kind to now_ns (under e->lock); true when n tokens are there. */
static bool bucket_has(struct kz_idlimit_entry *e, enum kz_idlimit_kind kind, uint64_t n, uint64_t now_ns)
{
	double rate = rate_of(e, kind);
	if (rate <= 0)
		return true;
	struct kz_idlimit_bucket *b = &e->b[kind];
	if (!b->last_ns) {
		b->tokens = rate; /* a full bucket: one second's worth */
		b->last_ns = now_ns;
	}
	if (now_ns > b->last_ns) {
		b->tokens += rate * (double)(now_ns - b->last_ns) / 1e9;
		if (b->tokens > rate)
			b->tokens = rate;
		b->last_ns = now_ns;
	}
	return b->tokens >= (double)n || (n > rate && b->tokens >= rate); /* one item above the rate: a full bucket */
}

static void bucket_take(struct kz_idlimit_entry *e, enum kz_idlimit_kind kind, uint64_t n)
{
	if (rate_of(e, kind) > 0)
		e->b[kind].tokens -= (double)n;
}

bool kz_idlimit_take(struct kz_idlimit_entry *e, enum kz_idlimit_kind kind, uint64_t n, uint64_t now_ns)
{
	if (!e || kind >= KZ_IDL_CONN || rate_of(e, kind) <= 0)
		return true;
	pthread_mutex_lock(&e->lock);
	bool ok = bucket_has(e, kind, n, now_ns);
	if (ok)
		bucket_take(e, kind, n);
	else
		e->unreported++;
	pthread_mutex_unlock(&e->lock);
	if (!ok)
		atomic_fetch_add(&e->throttled[kind], 1);
	return ok;
}

bool kz_idlimit_take_publish(struct kz_idlimit_entry *e, uint64_t bytes, uint64_t now_ns)
{
	if (!e || (e->lim.publish_rate == 0 && e->lim.publish_bytes == 0))
		return true;
	pthread_mutex_lock(&e->lock); /* one lock for both buckets: the per-PUBLISH cost */
	bool pk = bucket_has(e, KZ_IDL_PUBLISH, 1, now_ns);
	bool by = bucket_has(e, KZ_IDL_BYTES, bytes, now_ns);
	if (pk && by) {
		bucket_take(e, KZ_IDL_PUBLISH, 1);
		bucket_take(e, KZ_IDL_BYTES, bytes);
	} else {
		e->unreported++;
	}
	pthread_mutex_unlock(&e->lock);
	if (!pk)
		atomic_fetch_add(&e->throttled[KZ_IDL_PUBLISH], 1);
	else if (!by)
		atomic_fetch_add(&e->throttled[KZ_IDL_BYTES], 1);
	return pk && by;
}

uint64_t kz_idlimit_report(struct kz_idlimit_entry *e, uint64_t now_ns, uint64_t interval_ns)
{
	if (!e)
		return 0;
	pthread_mutex_lock(&e->lock);
	uint64_t n = 0;
	if (e->unreported && (!e->reported_ns || now_ns - e->reported_ns >= interval_ns)) {
		n = e->unreported;
		e->unreported = 0;
		e->reported_ns = now_ns;
	}
	pthread_mutex_unlock(&e->lock);
	return n;
}

void kz_idlimits_each(struct kz_idlimits *l, void (*fn)(void *ctx, const struct kz_idlimit_entry *e), void *ctx)
{
	pthread_mutex_lock(&l->lock);
	for (uint32_t i = 0; i < l->cap; i++) {
		struct kz_idlimit_entry *e = atomic_load(&l->slot[i]);
		if (e)
			fn(ctx, e);
	}
	pthread_mutex_unlock(&l->lock);
}
