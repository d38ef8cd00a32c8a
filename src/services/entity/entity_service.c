/* entity_service.c — the entity picture of a node (docs/ENTITIES.md): a thread that tails
 * the record log for records on kz/entity/<id> and applies them to the table (rebuilt from
 * the whole log at start), ticks it for stale and expiry, and the HTTPS API that reads it,
 * each entity passing the decision point (the reader may subscribe to its topic and
 * dominates its label) before it is shown or counted. */
#include "services/entity/entity_service_internal.h"
#include "services/entity/entity.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_json.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "base/kz_topic.h"
#include "http/http.h"
#include "store/store.h"
#include "trust/policy.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC_PREFIX "kz/entity/"
#define TOPIC_PREFIX_LEN (sizeof TOPIC_PREFIX - 1)


/* NUL-terminated copy of a record field. */
static const char *field(const struct kz_bytes *b, char *buf, size_t cap)
{
	size_t n = b->len < cap - 1 ? b->len : cap - 1;
	memcpy(buf, b->p, n);
	buf[n] = 0;
	return buf;
}

/* One record of the log (lock held). */
static int take(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	struct entity_service *s = ctx;
	s->next_seq = seq + 1;
	s->hint = *pos; /* the next scan starts at this frame, not at its segment's start */
	s->has_hint = true;
	struct kz_record r;
	const char *why = NULL;
	if (kz_record_decode(body, n, &r, &why) || r.topic.len <= TOPIC_PREFIX_LEN ||
	    memcmp(r.topic.p, TOPIC_PREFIX, TOPIC_PREFIX_LEN))
		return 0;
	struct entity_update u;
	const char *tid = (const char *)r.topic.p + TOPIC_PREFIX_LEN;
	size_t tlen = r.topic.len - TOPIC_PREFIX_LEN;
	if (entity_decode(&s->doc, (const char *)r.payload.p, r.payload.len, &u, &why) || strlen(u.id) != tlen ||
	    memcmp(u.id, tid, tlen)) {
		s->invalid++;
		kz_debug("entities: record %llu on %.*s is not an entity update: %s", (unsigned long long)seq,
			 (int)r.topic.len, r.topic.p, why ? why : "its id is not the topic's");
		return 0;
	}
	char origin[512], node[128], label[512];
	struct entity_source src = { .seq = seq, .received_ns = r.time_ns, .origin = field(&r.origin_id, origin, sizeof origin),
				     .node = field(&r.origin_node, node, sizeof node),
				     .label = field(&r.label, label, sizeof label) };
	enum entity_event ev;
	struct entity *e = NULL;
	if (entity_table_apply(s->t, &u, &src, &ev, &e))
		kz_debug("entities: record %llu not applied: a cap of the table (entity.max_entities)", (unsigned long long)seq);
	else if (ev != ENTITY_EV_NONE && e)
		entity_service_push(s, ev, e);
	return 0;
}

void entity_service_push(struct entity_service *s, enum entity_event ev, struct entity *e)
{
	uint64_t c = ++s->last_change;
	e->change = c;
	struct entity_change *slot = &s->ring[(c - 1) % s->ring_cap];
	free(slot->json); /* the event it held is gone from the ring */
	slot->json = NULL;
	slot->json_len = 0;
	slot->change = c;
	slot->ev = (uint8_t)ev;
	snprintf(slot->id, sizeof slot->id, "%s", e->id);
}

static void on_tick_event(void *ctx, enum entity_event ev, const struct entity *e)
{
	entity_service_push(ctx, ev, (struct entity *)e); /* the table's own entity: ours to number */
}

static int catch_up(struct entity_service *s, char *why, size_t why_len)
{
	uint64_t end;
	return kz_store_scan(s->cfg.store, s->next_seq, s->has_hint ? &s->hint : NULL, take, s, &end, why, why_len);
}

static void *tail(void *arg)
{
	struct entity_service *s = arg;
	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		while (!s->kicked && !s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &ts) == 0)
			;
		s->kicked = false;
		char why[256];
		if (catch_up(s, why, sizeof why))
			kz_warn("entities: reading the record log: %s", why);
		entity_table_tick(s->t, kz_now_wall_ns(), on_tick_event, s);
		entity_service_wake_streams(s); /* new events, or a heartbeat due */
		kz_json_trim(&s->doc, 1 << 16);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int entity_service_open(const struct entity_service_config *cfg, struct entity_service **out, char *why,
			size_t why_len)
{
	struct entity_service *s = calloc(1, sizeof *s);
	if (!s || entity_table_new(&cfg->table, &s->t)) {
		free(s);
		snprintf(why, why_len, "out of memory");
		return KZ_ENOMEM;
	}
	s->cfg = *cfg;
	snprintf(s->index_path, sizeof s->index_path, "%s", cfg->index_path ? cfg->index_path : "");
	snprintf(s->log_dir, sizeof s->log_dir, "%s", cfg->log_dir ? cfg->log_dir : "");
	s->cfg.index_path = s->index_path;
	s->cfg.log_dir = s->log_dir;
	s->next_seq = 1;
	s->ring_cap = cfg->stream_ring ? cfg->stream_ring : 16384;
	s->ring = calloc(s->ring_cap, sizeof *s->ring);
	s->epoch = kz_now_wall_ns() / 1000000u;
	if (!s->ring) {
		entity_table_free(s->t);
		free(s);
		snprintf(why, why_len, "out of memory (entity.stream_ring)");
		return KZ_ENOMEM;
	}
	pthread_mutex_init(&s->ix_lock, NULL);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	int rc = catch_up(s, why, why_len); /* the picture as the log has it, before serving */
	if (!rc)
		entity_table_tick(s->t, kz_now_wall_ns(), on_tick_event, s);
	if (!rc && pthread_create(&s->th, NULL, tail, s)) {
		snprintf(why, why_len, "cannot start the entity thread");
		rc = KZ_ENOMEM;
	}
	if (rc) {
		entity_service_close(s);
		return rc;
	}
	s->started = true;
	*out = s;
	return KZ_OK;
}

void entity_service_kick(struct entity_service *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->kicked = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

void entity_service_close(struct entity_service *s)
{
	if (!s)
		return;
	if (s->started) {
		pthread_mutex_lock(&s->lock);
		s->stop = true;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->th, NULL);
	}
	entity_streams_drop(s); /* none after the workers ended; released if one is left */
	entity_table_free(s->t);
	kz_json_free(&s->doc);
	kz_index_close(s->ix);
	for (uint32_t i = 0; s->ring && i < s->ring_cap; i++)
		free(s->ring[i].json);
	free(s->ring);
	pthread_mutex_destroy(&s->ix_lock);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void entity_service_stats(struct entity_service *s, struct entity_service_stats *out)
{
	pthread_mutex_lock(&s->lock);
	entity_table_stats(s->t, &out->table);
	out->invalid = s->invalid;
	out->streams = s->n_streams;
	out->stream_resets = s->stream_resets;
	out->next_seq = s->next_seq;
	pthread_mutex_unlock(&s->lock);
}

struct entity_table *entity_service_table(struct entity_service *s) { return s->t; }

void entity_service_lock(struct entity_service *s, bool lock)
{
	if (lock)
		pthread_mutex_lock(&s->lock);
	else
		pthread_mutex_unlock(&s->lock);
}

const struct entity_service_config *entity_service_config(const struct entity_service *s) { return &s->cfg; }

struct kz_index *entity_service_index(struct entity_service *s, char *why, size_t why_len)
{
	if (s->ix)
		return s->ix;
	if (!s->index_path[0]) {
		snprintf(why, why_len, "the node keeps no record index");
		return NULL;
	}
	struct kz_index_config ic = { .path = s->index_path, .log_dir = s->log_dir,
				      .max_record_bytes = s->cfg.max_record_bytes, .read_only = true };
	if (kz_index_open(&ic, &s->ix, why, why_len))
		s->ix = NULL;
	return s->ix;
}

void entity_service_index_lock(struct entity_service *s, bool lock)
{
	if (lock)
		pthread_mutex_lock(&s->ix_lock);
	else
		pthread_mutex_unlock(&s->ix_lock);
}

int entity_service_snapshot(struct entity_service *s, const char *filter, size_t filter_len, entity_snapshot_fn cb,
			    void *ctx)
{
	struct kz_buf b;
	kz_buf_init(&b, 0);
	int rc = KZ_OK;
	pthread_mutex_lock(&s->lock);
	struct entity *e;
	for (size_t i = 0; rc == KZ_OK && (e = entity_table_at(s->t, i)) != NULL; i++) {
		if (e->status == ENTITY_REMOVED)
			continue;
		char topic[16 + ENTITY_ID_MAX + 1];
		int tn = snprintf(topic, sizeof topic, "kz/entity/%.*s", ENTITY_ID_MAX, e->id);
		if (!kz_topic_match((const uint8_t *)filter, filter_len, (const uint8_t *)topic, (size_t)tn))
			continue;
		kz_buf_reset(&b);
		/* one message, one label: fields with a label of their own are left out (they come
		 * with the next update that sets them, docs/ENTITIES.md "Field labels") */
		uint32_t hide = 0;
		for (int g = 0; e->fl && g < ENTITY_G_N; g++)
			hide |= e->fl->group[g] ? 1u << g : 0;
		for (unsigned a = 0; e->fl && a < e->n_aliases; a++)
			hide |= e->fl->alias[a] ? ENTITY_HIDE_ALIAS(a) : 0;
		rc = entity_to_json_hiding(e, hide, &b);
		if (rc == KZ_OK)
			cb(ctx, topic, kz_buf_head(&b), b.len, e->label ? e->label : "");
	}
	pthread_mutex_unlock(&s->lock);
	kz_buf_cleanup(&b);
	return rc;
}

int entity_service_changes(struct entity_service *s, uint64_t *cursor, size_t max, entity_change_fn cb, void *ctx)
{
	int snapshot = 0;
	size_t calls = 0;
	pthread_mutex_lock(&s->lock);
	if (*cursor == ENTITY_CURSOR_START || *cursor > s->last_change || s->last_change - *cursor > s->ring_cap) {
		/* the whole picture, then the changes after it (a snapshot is not cut by max: the
		 * reader's cursor must land on the ring) */
		struct entity *e;
		for (size_t i = 0; (e = entity_table_at(s->t, i)) != NULL; i++)
			if (e->status != ENTITY_REMOVED)
				cb(ctx, ENTITY_EV_NONE, e);
		*cursor = s->last_change;
		snapshot = 1;
	}
	while (*cursor < s->last_change && (!max || calls < max)) {
		uint64_t c = ++*cursor;
		struct entity_change *slot = &s->ring[(c - 1) % s->ring_cap];
		struct entity *e = entity_table_find(s->t, slot->id);
		if (!e || e->change != c) /* gone, or changed again: a later event has it */
			continue;
		cb(ctx, (enum entity_event)slot->ev, e);
		calls++;
	}
	pthread_mutex_unlock(&s->lock);
	return snapshot;
}
