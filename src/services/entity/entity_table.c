/* entity_table.c — the current state of every entity, and the rules that apply an update to
 * it (docs/ENTITIES.md "Rules"). Entities live in one array (iteration, tick); one hash map
 * takes an id or an alias to its entity; strings that many entities share (types, labels,
 * identities, adapters) are interned once. */
#include "services/entity/entity.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"

#include <stdlib.h>
#include <string.h>

/* ---------- a string -> pointer map (open addressing, linear probing) ---------- */

static const char TOMB[] = "";

struct slot {
	const char *key; /* borrowed: owned by the entity or the intern pool; TOMB: deleted */
	uint64_t h;
	void *val;
};

struct strmap {
	struct slot *v;
	size_t cap, n, tombs; /* cap a power of two */
};

static struct slot *map_probe(const struct strmap *m, const char *key, uint64_t h)
{
	if (!m->cap)
		return NULL;
	for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		struct slot *s = &m->v[i];
		if (!s->key)
			return NULL;
		if (s->key != TOMB && s->h == h && !strcmp(s->key, key))
			return s;
	}
}

static void *map_get(const struct strmap *m, const char *key)
{
	struct slot *s = map_probe(m, key, kz_hash(key, strlen(key)));
	return s ? s->val : NULL;
}

static int map_grow(struct strmap *m)
{
	size_t cap = m->cap ? m->cap : 64;
	if ((m->n + 1) * 4 >= cap * 3)
		cap *= 2;
	struct slot *v = calloc(cap, sizeof *v);
	if (!v)
		return KZ_ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->v[i].key || m->v[i].key == TOMB)
			continue;
		size_t j = m->v[i].h & (cap - 1);
		while (v[j].key)
			j = (j + 1) & (cap - 1);
		v[j] = m->v[i];
	}
	free(m->v);
	m->v = v;
	m->cap = cap;
	m->tombs = 0;
	return KZ_OK;
}

/* key must not be in the map. */
static int map_put(struct strmap *m, const char *key, void *val)
{
	if ((m->n + m->tombs + 1) * 4 >= m->cap * 3 && map_grow(m))
		return KZ_ENOMEM;
	uint64_t h = kz_hash(key, strlen(key));
	size_t i = h & (m->cap - 1);
	while (m->v[i].key && m->v[i].key != TOMB)
		i = (i + 1) & (m->cap - 1);
	if (m->v[i].key == TOMB)
		m->tombs--;
	m->v[i] = (struct slot){ key, h, val };
	m->n++;
	return KZ_OK;
}

static void map_del(struct strmap *m, const char *key)
{
	struct slot *s = map_probe(m, key, kz_hash(key, strlen(key)));
	if (!s)
		return;
	s->key = TOMB;
	s->val = NULL;
	m->n--;
	m->tombs++;
}

/* ---------- the table ---------- */

struct entity_table {
	struct entity_table_config cfg;
	struct strmap names;    /* id or alias -> struct entity * */
	struct strmap interned; /* string -> itself (owned here) */
	struct entity **all;
	size_t n_all, cap_all;
	uint64_t n_status[4];   /* by enum entity_status */
	uint64_t applied, older, refused, alias_moves;
	uint64_t bytes;         /* entities, their own strings, interned strings */
	uint32_t forget_held;   /* entity_table_hold_forget */
};

int entity_table_new(const struct entity_table_config *cfg, struct entity_table **out)
{
	struct entity_table *t = calloc(1, sizeof *t);
	if (!t)
		return KZ_ENOMEM;
	t->cfg = *cfg;
	*out = t;
	return KZ_OK;
}

static void entity_free(struct entity *e)
{
	free(e->id);
	for (unsigned i = 0; i < e->n_aliases; i++)
		free(e->aliases[i]);
	free(e->attributes);
	free(e->fl);
	free(e);
}

void entity_table_free(struct entity_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_all; i++)
		entity_free(t->all[i]);
	for (size_t i = 0; i < t->interned.cap; i++)
		if (t->interned.v[i].key && t->interned.v[i].key != TOMB)
			free(t->interned.v[i].val);
	free(t->interned.v);
	free(t->names.v);
	free(t->all);
	free(t);
}

/* The pooled copy of s (NULL for NULL or ""); *failed set when the pool is full or memory
 * ran out. */
static const char *intern(struct entity_table *t, const char *s, bool *failed)
{
	if (!s || !*s)
		return NULL;
	char *p = map_get(&t->interned, s);
	if (p)
		return p;
	if (t->interned.n >= t->cfg.max_interned || !(p = strdup(s)) || map_put(&t->interned, p, p)) {
		free(p);
		*failed = true;
		return NULL;
	}
	t->bytes += strlen(p) + 1;
	return p;
}

static uint64_t own_bytes(const struct entity *e)
{
	uint64_t b = sizeof *e + strlen(e->id) + 1 + (e->attributes ? strlen(e->attributes) + 1 : 0) +
		     (e->fl ? sizeof *e->fl : 0);
	for (unsigned i = 0; i < e->n_aliases; i++)
		b += strlen(e->aliases[i]) + 1;
	return b;
}

static void forget(struct entity_table *t, struct entity *e)
{
	map_del(&t->names, e->id);
	for (unsigned i = 0; i < e->n_aliases; i++)
		map_del(&t->names, e->aliases[i]);
	t->n_status[e->status]--;
	t->bytes -= own_bytes(e);
	struct entity *last = t->all[--t->n_all];
	t->all[e->idx] = last;
	last->idx = e->idx;
	entity_free(e);
}

static struct entity *create(struct entity_table *t, const char *id)
{
	if (t->n_all >= t->cfg.max_entities)
		return NULL;
	if (t->n_all == t->cap_all) {
		size_t cap = t->cap_all ? t->cap_all * 2 : 256;
		struct entity **v = realloc(t->all, cap * sizeof *v);
		if (!v)
			return NULL;
		t->all = v;
		t->cap_all = cap;
	}
	struct entity *e = calloc(1, sizeof *e);
	if (!e || !(e->id = strdup(id)) || map_put(&t->names, e->id, e)) {
		if (e)
			free(e->id);
		free(e);
		return NULL;
	}
	e->status = ENTITY_LIVE;
	e->idx = (uint32_t)t->n_all;
	t->all[t->n_all++] = e;
	t->n_status[ENTITY_LIVE]++;
	t->bytes += own_bytes(e);
	return e;
}

static void set_status(struct entity_table *t, struct entity *e, enum entity_status s)
{
	t->n_status[e->status]--;
	e->status = (uint8_t)s;
	t->n_status[s]++;
}

static void alias_drop(struct entity *e, const char *alias)
{
	for (unsigned i = 0; i < e->n_aliases; i++)
		if (!strcmp(e->aliases[i], alias)) {
			free(e->aliases[i]);
			e->aliases[i] = e->aliases[--e->n_aliases];
			if (e->fl)
				e->fl->alias[i] = e->fl->alias[e->n_aliases];
			return;
		}
}

/* The field labels of e, made on first need (NULL: out of memory). */
static struct entity_flabels *flabels(struct entity_table *t, struct entity *e)
{
	if (!e->fl && (e->fl = calloc(1, sizeof *e->fl)))
		t->bytes += sizeof *e->fl;
	return e->fl;
}

/* Gives alias to e (rule 2 of docs/ENTITIES.md: an alias names one entity; another entity's
 * alias moves to e only when e's update is at least as new as that entity's state). */
static void alias_take(struct entity_table *t, struct entity *e, const char *alias, uint64_t source_ns,
		       const char *label)
{
	struct entity *owner = map_get(&t->names, alias);
	if (owner == e || e->n_aliases >= ENTITY_MAX_ALIASES)
		return;
	if (owner && (source_ns < owner->source_ns || !strcmp(owner->id, alias)))
		return; /* an older claim, or another entity's own id: stays where it is */
	char *copy = strdup(alias);
	if (!copy)
		return;
	if (owner) {
		t->bytes -= strlen(alias) + 1;
		map_del(&t->names, alias);
		alias_drop(owner, alias);
		t->alias_moves++;
	}
	if ((label && !flabels(t, e)) || map_put(&t->names, copy, e)) {
		free(copy);
		return;
	}
	if (e->fl)
		e->fl->alias[e->n_aliases] = label;
	e->aliases[e->n_aliases++] = copy;
	t->bytes += strlen(copy) + 1;
}

/* A revived tombstone starts afresh: what it was before its removal is not its state. */
static void reset(struct entity_table *t, struct entity *e)
{
	t->bytes -= own_bytes(e);
	free(e->attributes);
	uint64_t version = e->version;
	struct entity keep = { .id = e->id, .n_aliases = e->n_aliases, .status = e->status, .idx = e->idx,
			       .fl = e->fl };
	memcpy(keep.aliases, e->aliases, sizeof keep.aliases);
	if (keep.fl) /* its aliases keep theirs: what they were learnt under does not change */
		memset(keep.fl->group, 0, sizeof keep.fl->group);
	*e = keep;
	e->version = version;
	t->bytes += own_bytes(e);
}

/* Rule 5 (docs/ENTITIES.md "Field labels"): an update at the entity's label clears the
 * labels of the groups it sets; one at another label gives them its own. fresh: the update
 * creates the entity (again), and its label becomes the entity's. */
static const uint32_t GROUP_FIELDS[ENTITY_G_N] = {
	[ENTITY_G_TYPE] = ENTITY_F_TYPE | ENTITY_F_SYMBOL, [ENTITY_G_NAME] = ENTITY_F_NAME,
	[ENTITY_G_POSITION] = ENTITY_F_POSITION, [ENTITY_G_MOTION] = ENTITY_F_MOTION,
	[ENTITY_G_ATTRIBUTES] = ENTITY_F_ATTRIBUTES, [ENTITY_G_PROVENANCE] = ~0u, /* every update */
};

static int set_fields(struct entity_table *t, struct entity *e, const struct entity_update *u,
		      const struct entity_source *src, bool fresh)
{
	bool failed = false;
	const char *type = u->has & ENTITY_F_TYPE ? intern(t, u->type, &failed) : e->type;
	const char *symbol = u->has & ENTITY_F_SYMBOL ? intern(t, u->symbol, &failed) : e->symbol;
	const char *name = u->has & ENTITY_F_NAME ? intern(t, u->name, &failed) : e->name;
	const char *adapter = u->has & ENTITY_F_ADAPTER ? intern(t, u->adapter, &failed) : e->adapter;
	const char *sensor = u->has & ENTITY_F_SENSOR ? intern(t, u->sensor, &failed) : e->sensor;
	const char *origin = intern(t, src->origin, &failed);
	const char *node = intern(t, src->node, &failed);
	const char *label = intern(t, src->label, &failed);
	char *attrs = NULL;
	if ((u->has & ENTITY_F_ATTRIBUTES) && u->attributes_len > 2 && !(attrs = strndup(u->attributes, u->attributes_len)))
		failed = true;
	if (!failed && !fresh && label != e->label && !flabels(t, e))
		return KZ_ENOMEM;
	if (failed) {
		free(attrs);
		return KZ_ETOOBIG;
	}
	if (fresh)
		e->label = label;
	for (int g = 0; e->fl && g < ENTITY_G_N; g++)
		if (u->has & GROUP_FIELDS[g] || g == ENTITY_G_PROVENANCE)
			e->fl->group[g] = label == e->label ? NULL : label;
	e->type = type, e->symbol = symbol, e->name = name, e->adapter = adapter, e->sensor = sensor;
	e->origin = origin, e->node = node;
	if (u->has & ENTITY_F_ATTRIBUTES) {
		t->bytes -= e->attributes ? strlen(e->attributes) + 1 : 0;
		free(e->attributes);
		e->attributes = attrs;
		t->bytes += attrs ? strlen(attrs) + 1 : 0;
	}
	if (u->has & ENTITY_F_POSITION) {
		e->pos = u->pos;
		e->pos.has |= ENTITY_POS_KNOWN;
	}
	if (u->has & ENTITY_F_MOTION)
		e->motion = u->motion;
	return KZ_OK;
}

static void set_times(struct entity_table *t, struct entity *e, const struct entity_update *u, uint64_t source_ns,
		      uint64_t received_ns)
{
	e->source_ns = source_ns;
	e->received_ns = received_ns;
	e->stale_ns = u->has & ENTITY_F_STALE_TIME ? u->stale_ns : source_ns + t->cfg.default_stale_ms * 1000000u;
	e->expiry_ns = u->has & ENTITY_F_EXPIRY_TIME ? u->expiry_ns : e->stale_ns + t->cfg.default_expiry_ms * 1000000u;
	if (e->expiry_ns < e->stale_ns)
		e->stale_ns = e->expiry_ns;
}

/* The entity an update is for (rule 1): its id's, else the first alias's that is known. */
static struct entity *resolve(struct entity_table *t, const struct entity_update *u)
{
	struct entity *e = map_get(&t->names, u->id);
	for (unsigned i = 0; !e && i < u->n_aliases; i++)
		e = map_get(&t->names, u->aliases[i]);
	return e;
}

int entity_table_apply(struct entity_table *t, const struct entity_update *u, const struct entity_source *src,
		       enum entity_event *ev, struct entity **out)
{
	uint64_t source_ns = u->has & ENTITY_F_SOURCE_TIME ? u->source_ns : src->received_ns;
	struct entity *e = resolve(t, u);
	*ev = ENTITY_EV_NONE;
	if (out)
		*out = e;
	if (e && src->seq && src->seq <= e->seq)
		return KZ_OK; /* this record, or a later one, is applied already (a replay) */
	if (e && source_ns < e->source_ns) { /* rule 3: older than what we have */
		t->older++;
		return KZ_OK;
	}
	if (!e && (u->has & ENTITY_F_REMOVED))
		return KZ_OK; /* nothing to remove */
	bool fresh = !e || e->status == ENTITY_REMOVED;
	if (!e && !(e = create(t, u->id))) {
		t->refused++;
		return t->n_all >= t->cfg.max_entities ? KZ_ETOOBIG : KZ_ENOMEM;
	}
	bool relabel = e->version == 0;
	if (e->status == ENTITY_REMOVED && !(u->has & ENTITY_F_REMOVED)) {
		reset(t, e);
		relabel = true;
	}
	int rc = set_fields(t, e, u, src, relabel);
	if (rc) {
		if (e->version == 0)
			forget(t, e);
		t->refused++;
		if (out)
			*out = NULL;
		return rc;
	}
	const char *alabel = e->fl ? e->fl->group[ENTITY_G_PROVENANCE] : NULL; /* this update's, when not the entity's */
	if (strcmp(e->id, u->id))
		alias_take(t, e, u->id, source_ns, alabel);
	for (unsigned i = 0; i < u->n_aliases; i++)
		alias_take(t, e, u->aliases[i], source_ns, alabel);
	set_times(t, e, u, source_ns, src->received_ns);
	e->seq = src->seq;
	e->version++;
	t->applied++;
	if (out)
		*out = e;
	if (u->has & ENTITY_F_REMOVED) {
		if (e->status != ENTITY_REMOVED) {
			set_status(t, e, ENTITY_REMOVED);
			*ev = ENTITY_EV_REMOVE;
		}
		e->removed_ns = src->received_ns;
		return KZ_OK;
	}
	if (e->status != ENTITY_LIVE)
		set_status(t, e, ENTITY_LIVE);
	*ev = fresh ? ENTITY_EV_CREATE : ENTITY_EV_UPDATE;
	return KZ_OK;
}

void entity_table_tick(struct entity_table *t, uint64_t now_ns, entity_event_fn cb, void *ctx)
{
	for (size_t i = 0; i < t->n_all;) {
		struct entity *e = t->all[i];
		if (e->status == ENTITY_REMOVED) {
			if (!t->forget_held && now_ns >= e->removed_ns + t->cfg.removed_keep_ms * 1000000u) {
				forget(t, e); /* the last entity took place i */
				continue;
			}
		} else if (now_ns >= e->expiry_ns) {
			set_status(t, e, ENTITY_REMOVED);
			e->removed_ns = now_ns;
			if (cb)
				cb(ctx, ENTITY_EV_REMOVE, e);
		} else if (e->status == ENTITY_LIVE && now_ns >= e->stale_ns) {
			set_status(t, e, ENTITY_STALE);
			if (cb)
				cb(ctx, ENTITY_EV_STALE, e);
		}
		i++;
	}
}

void entity_table_hold_forget(struct entity_table *t, bool hold)
{
	if (hold)
		t->forget_held++;
	else if (t->forget_held)
		t->forget_held--;
}

struct entity *entity_table_at(struct entity_table *t, size_t i) { return i < t->n_all ? t->all[i] : NULL; }

size_t entity_table_count(const struct entity_table *t) { return t->n_all; }

struct entity *entity_table_find(struct entity_table *t, const char *id_or_alias)
{
	return map_get(&t->names, id_or_alias);
}

int entity_table_each(struct entity_table *t, entity_each_fn cb, void *ctx)
{
	for (size_t i = 0; i < t->n_all; i++) {
		int rc = cb(ctx, t->all[i]);
		if (rc)
			return rc;
	}
	return 0;
}

void entity_table_stats(const struct entity_table *t, struct entity_table_stats *out)
{
	*out = (struct entity_table_stats){
		.live = t->n_status[ENTITY_LIVE], .stale = t->n_status[ENTITY_STALE],
		.removed = t->n_status[ENTITY_REMOVED], .applied = t->applied, .older = t->older,
		.refused = t->refused, .alias_moves = t->alias_moves,
		.bytes = t->bytes + (t->names.cap + t->interned.cap) * sizeof(struct slot) +
			 t->cap_all * sizeof(struct entity *),
	};
}

bool entity_table_check(const struct entity_table *t)
{
	uint64_t names = 0, by[4] = { 0 };
	for (size_t i = 0; i < t->n_all; i++) {
		const struct entity *e = t->all[i];
		if (e->idx != i || e->status < ENTITY_LIVE || e->status > ENTITY_REMOVED || e->stale_ns > e->expiry_ns)
			return false;
		by[e->status]++;
		if (map_get(&t->names, e->id) != e)
			return false;
		for (unsigned k = 0; k < e->n_aliases; k++)
			if (map_get(&t->names, e->aliases[k]) != e)
				return false;
		names += 1 + e->n_aliases;
	}
	return names == t->names.n && by[1] == t->n_status[1] && by[2] == t->n_status[2] && by[3] == t->n_status[3];
}
