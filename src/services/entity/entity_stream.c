/* entity_stream.c — GET /api/v1/stream/entities: the picture as Server-Sent Events
 * (docs/ENTITIES.md "The stream"; the WHATWG HTML "Server-sent events" format).
 *
 * A stream first sends every matching entity it may see (event "snapshot"), then "synced",
 * then the picture's events in order (create, update, stale, remove), each with its entity's
 * whole current state. It reads the service's change ring behind its own cursor, so a slow
 * client costs no memory of its own: an entity that changed several times while the client
 * was not reading is sent once, as it is now (coalescing). A client further behind than the
 * ring gets "reset" and a new snapshot. Event ids are "<epoch>-<change>"; a client that comes
 * back with Last-Event-ID from this process and within the ring gets what it missed, else a
 * reset and a snapshot.
 *
 *     SNAPSHOT (walks the table by index; the table holds its tombstones meanwhile)
 *        --all written--> "synced" --> LIVE (cursor in the ring)
 *     LIVE --fell behind the ring--> "reset" --> SNAPSHOT
 *
 * Every event passes the decision point for the reader (entity_reader_sees), checked when it
 * is written with the policy in force then. */
#include "services/entity/entity_service_internal.h"
#include "services/entity/entity_view.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "http/http.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 65536 /* bytes written at once */

struct entity_stream {
	struct entity_service *svc;
	struct kz_http_stream *hs;
	struct entity_filter f;
	char identity[512];
	bool snapshot, reset_first, holding;
	size_t snap_i;          /* SNAPSHOT: the next index of the table's array */
	uint64_t snap_change;   /* SNAPSHOT: the last event when it began: LIVE goes on from there */
	uint64_t cursor;        /* LIVE: the last event looked at */
	uint64_t last_write_ms;
	struct kz_buf buf;
	struct entity_stream *prev, *next; /* the service's list (under its lock) */
};

static const char *ev_name(uint8_t ev)
{
	switch (ev) {
	case ENTITY_EV_CREATE: return "create";
	case ENTITY_EV_UPDATE: return "update";
	case ENTITY_EV_STALE: return "stale";
	case ENTITY_EV_REMOVE: return "remove";
	default: return "snapshot";
	}
}

/* One snapshot event: "event: snapshot\ndata: JSON\n\n" (no id: a client resumes from
 * "synced" or a later event). */
static int snapshot_event(struct entity_stream *st, const struct entity *e, uint32_t hide)
{
	static const char head[] = "event: snapshot\ndata: ";
	return kz_buf_append(&st->buf, head, sizeof head - 1) || entity_to_json_hiding(e, hide, &st->buf) ||
			       kz_buf_append(&st->buf, "\n\n", 2)
		       ? KZ_ENOMEM
		       : KZ_OK;
}

/* A live event, its JSON rendered once per ring slot and shared by every stream that writes
 * it (valid while the entity has not changed since: the caller checked e->change); for a
 * reader who may not see some of its fields (hide), rendered for this stream alone. */
static int shared_event(struct entity_stream *st, struct entity_change *slot, const struct entity *e, uint32_t hide)
{
	if (hide) {
		char head[96];
		int n = snprintf(head, sizeof head, "event: %s\nid: %" PRIu64 "-%" PRIu64 "\ndata: ", ev_name(slot->ev),
				 st->svc->epoch, slot->change);
		return kz_buf_append(&st->buf, head, (size_t)n) || entity_to_json_hiding(e, hide, &st->buf) ||
				       kz_buf_append(&st->buf, "\n\n", 2)
			       ? KZ_ENOMEM
			       : KZ_OK;
	}
	if (!slot->json) {
		struct kz_buf b;
		kz_buf_init(&b, 0);
		if (entity_to_json(e, &b) || !(slot->json = malloc(b.len ? b.len : 1))) {
			kz_buf_cleanup(&b);
			return KZ_ENOMEM;
		}
		memcpy(slot->json, kz_buf_head(&b), b.len);
		slot->json_len = (uint32_t)b.len;
		kz_buf_cleanup(&b);
	}
	char head[96];
	int n = snprintf(head, sizeof head, "event: %s\nid: %" PRIu64 "-%" PRIu64 "\ndata: ", ev_name(slot->ev),
			 st->svc->epoch, slot->change);
	return kz_buf_append(&st->buf, head, (size_t)n) || kz_buf_append(&st->buf, slot->json, slot->json_len) ||
			       kz_buf_append(&st->buf, "\n\n", 2)
		       ? KZ_ENOMEM
		       : KZ_OK;
}

static void hold(struct entity_stream *st, bool on)
{
	if (st->holding != on)
		entity_table_hold_forget(st->svc->t, on);
	st->holding = on;
}

static void begin_snapshot(struct entity_stream *st)
{
	st->snapshot = true;
	st->snap_i = 0;
	st->snap_change = st->svc->last_change;
	hold(st, true);
}

/* The next part of the snapshot (service lock held). */
static int snapshot_part(struct entity_stream *st, struct entity_reader *rd)
{
	if (st->reset_first) {
		if (kz_buf_append(&st->buf, "event: reset\ndata: {}\n\n", 23))
			return KZ_ENOMEM;
		st->reset_first = false;
	}
	struct entity *e = NULL;
	while (st->buf.len < CHUNK && (e = entity_table_at(st->svc->t, st->snap_i)) != NULL) {
		st->snap_i++;
		if (e->change > st->snap_change)
			continue; /* changed since the snapshot began: its event follows "synced" (no duplicate at the seam) */
		if (entity_filter_matches(&st->f, e) && entity_reader_sees(rd, e) &&
		    snapshot_event(st, e, entity_reader_hides(rd, e)))
			return KZ_ENOMEM;
	}
	if (e || st->snap_i < entity_table_count(st->svc->t))
		return KZ_OK; /* more next time */
	char synced[96];
	int n = snprintf(synced, sizeof synced, "event: synced\nid: %" PRIu64 "-%" PRIu64 "\ndata: {}\n\n", st->svc->epoch,
			 st->snap_change);
	if (kz_buf_append(&st->buf, synced, (size_t)n))
		return KZ_ENOMEM;
	st->snapshot = false;
	st->cursor = st->snap_change;
	hold(st, false);
	return KZ_OK;
}

/* Events after the cursor (service lock held). Removals pass whatever the status filter. */
static int live_part(struct entity_stream *st, struct entity_reader *rd)
{
	struct entity_service *s = st->svc;
	if (s->last_change > st->cursor + s->ring_cap) { /* the ring moved past it */
		s->stream_resets++;
		st->reset_first = true;
		begin_snapshot(st);
		return snapshot_part(st, rd);
	}
	struct entity_filter any = st->f;
	any.status_mask = 1u << ENTITY_LIVE | 1u << ENTITY_STALE | 1u << ENTITY_REMOVED;
	while (st->buf.len < CHUNK && st->cursor < s->last_change) {
		uint64_t c = ++st->cursor;
		struct entity_change *slot = &s->ring[(c - 1) % s->ring_cap];
		struct entity *e = entity_table_find(s->t, slot->id);
		if (!e || e->change != c) /* gone, or changed again: a later event has it */
			continue;
		const struct entity_filter *f = slot->ev == ENTITY_EV_REMOVE ? &any : &st->f;
		if (entity_filter_matches(f, e) && entity_reader_sees(rd, e) &&
		    shared_event(st, slot, e, entity_reader_hides(rd, e)))
			return KZ_ENOMEM;
	}
	return KZ_OK;
}

static void on_writable(void *ctx, struct kz_http_stream *hs)
{
	struct entity_stream *st = ctx;
	struct entity_service *s = st->svc;
	const struct entity_service_config *cfg = &s->cfg;
	uint64_t now = kz_now_mono_ms();
	if (!st->snapshot && cfg->stream_interval_ms && now - st->last_write_ms < cfg->stream_interval_ms)
		return; /* the service's next wake comes within a second */
	kz_buf_reset(&st->buf);
	struct entity_reader rd;
	entity_reader_init(&rd, cfg->policy ? atomic_load(cfg->policy) : NULL, st->identity);
	pthread_mutex_lock(&s->lock);
	int rc = st->snapshot ? snapshot_part(st, &rd) : live_part(st, &rd);
	pthread_mutex_unlock(&s->lock);
	if (rc) { /* out of memory: end the stream; the client reconnects and starts over */
		kz_http_stream_write(hs, "event: reset\ndata: {}\n\n", 23, true);
		return;
	}
	if (!st->buf.len && now - st->last_write_ms >= cfg->stream_heartbeat_ms)
		kz_buf_append(&st->buf, ": heartbeat\n\n", 13);
	if (!st->buf.len)
		return;
	st->last_write_ms = now;
	kz_http_stream_write(hs, kz_buf_head(&st->buf), st->buf.len, false);
	if (st->buf.cap > 4 * CHUNK)
		kz_buf_shrink(&st->buf, CHUNK);
}

static void stream_free(struct entity_stream *st)
{
	kz_http_stream_release(st->hs);
	kz_buf_cleanup(&st->buf);
	free(st);
}

static void unlink_stream(struct entity_stream *st)
{
	struct entity_service *s = st->svc;
	hold(st, false);
	if (st->prev)
		st->prev->next = st->next;
	else
		s->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	s->n_streams--;
}

static void on_closed(void *ctx)
{
	struct entity_stream *st = ctx;
	pthread_mutex_lock(&st->svc->lock);
	unlink_stream(st);
	pthread_mutex_unlock(&st->svc->lock);
	stream_free(st);
}

static const struct kz_http_stream_ops stream_ops = { .writable = on_writable, .closed = on_closed };

void entity_service_wake_streams(struct entity_service *s)
{
	for (struct entity_stream *st = s->streams; st; st = st->next)
		kz_http_stream_wake(st->hs);
}

void entity_streams_drop(struct entity_service *s)
{
	while (s->streams) {
		struct entity_stream *st = s->streams;
		unlink_stream(st);
		stream_free(st);
	}
}

/* Where a client that comes back starts: LIVE at its Last-Event-ID when that is this
 * process's and still in the ring; else a snapshot (after "reset" when it had an id). */
static void resume_point(struct entity_stream *st, const char *last_id)
{
	struct entity_service *s = st->svc;
	uint64_t epoch, change;
	char tail;
	if (last_id && sscanf(last_id, "%" SCNu64 "-%" SCNu64 "%c", &epoch, &change, &tail) == 2 && epoch == s->epoch &&
	    change <= s->last_change && change + s->ring_cap >= s->last_change) {
		st->cursor = change;
		return;
	}
	st->reset_first = last_id && *last_id;
	begin_snapshot(st);
}

void entity_stream_get(struct entity_service *s, struct kz_http_req *r)
{
	struct entity_stream *st = calloc(1, sizeof *st);
	if (!st) {
		kz_http_error(r, 503, NULL, "Service Unavailable", "out of memory");
		return;
	}
	entity_filter_init(&st->f, s->cfg.max_page);
	const char *qwhy = NULL;
	if (kz_http_query_each(r->query, strlen(r->query), entity_filter_param, &st->f, &qwhy) || st->f.has_limit ||
	    st->f.has_next) {
		kz_http_error(r, 400, NULL, "Bad request", "%s",
			      qwhy ? qwhy : st->f.why[0] ? st->f.why : "limit and next are for lists, not for the stream");
		free(st);
		return;
	}
	snprintf(st->identity, sizeof st->identity, "%s", r->identity ? r->identity : "");
	kz_buf_init(&st->buf, 0);
	st->svc = s;
	const char *last_id = kz_http_req_header(r, "last-event-id");
	pthread_mutex_lock(&s->lock);
	if (s->n_streams >= s->cfg.max_streams) {
		pthread_mutex_unlock(&s->lock);
		free(st);
		kz_http_header(r, "Retry-After", "10");
		kz_http_error(r, 503, NULL, "Service Unavailable", "%u entity streams are open, the limit "
			      "(entity.max_streams)", s->cfg.max_streams);
		return;
	}
	resume_point(st, last_id);
	st->last_write_ms = kz_now_mono_ms();
	st->hs = kz_http_stream_start(r, 200, "text/event-stream", &stream_ops, st);
	if (!st->hs) {
		hold(st, false);
		pthread_mutex_unlock(&s->lock);
		kz_buf_cleanup(&st->buf);
		free(st);
		return;
	}
	st->next = s->streams;
	if (s->streams)
		s->streams->prev = st;
	s->streams = st;
	s->n_streams++;
	pthread_mutex_unlock(&s->lock);
}
