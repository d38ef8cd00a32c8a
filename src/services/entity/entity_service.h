/* entity_service.h — the node's entity picture (docs/ENTITIES.md): the table fed from the
 * record log (records on kz/entity/<id>), rebuilt from the whole log at start, and its
 * HTTPS API under /api/v1/entities. */
#ifndef KZ_ENTITY_SERVICE_H
#define KZ_ENTITY_SERVICE_H

#include "services/entity/entity.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kz_http;
struct kz_policy;
struct kz_store;

struct entity_service_config {
	struct kz_store *store;             /* borrowed: outlives the service */
	_Atomic(struct kz_policy *) *policy; /* the node's policy (NULL inside: policy.open) */
	struct entity_table_config table;
	const char *index_path;             /* DIR/index.db, for history (read only; copied) */
	const char *log_dir;                /* DIR/log (copied) */
	uint32_t max_record_bytes;
	uint32_t max_page;                  /* entities in one answer at most */
	uint32_t default_page;              /* when the request gives no limit */
	uint32_t stream_ring;               /* events kept for streams (a slower one starts over) */
	uint32_t max_streams;               /* open streams at most */
	uint32_t stream_heartbeat_ms;       /* a comment line after this long without an event */
	uint32_t stream_interval_ms;        /* a stream is written at most this often (0: as it reads) */
};

struct entity_service;

/* Builds the picture from the log (every record so far) and starts the thread that follows
 * it. 0, or an error with why. */
int entity_service_open(const struct entity_service_config *cfg, struct entity_service **out, char *why,
			size_t why_len);
/* New records are durable (the store's durable callback): read them now, not at the next
 * second. Any thread; NULL: nothing. */
void entity_service_kick(struct entity_service *s);
void entity_service_close(struct entity_service *s);

/* Every live or stale entity whose topic (kz/entity/<id>) matches the MQTT filter, as the
 * API's JSON with its label (canonical text, "" when none), in the table's order: cb is
 * called under the service's lock (it must not call back into the service). */
typedef void (*entity_snapshot_fn)(void *ctx, const char *topic, const uint8_t *json, size_t n, const char *label);
int entity_service_snapshot(struct entity_service *s, const char *filter, size_t filter_len, entity_snapshot_fn cb,
			    void *ctx);

/* A reader outside HTTP (the TAK endpoint, docs/ADAPTERS.md "TAK"): calls cb, under the
 * service's lock, for each entity changed after *cursor, once with its state now (changes
 * coalesced) and the kind of its last event, then moves *cursor on. With *cursor
 * ENTITY_CURSOR_START (a new reader), or when the reader fell behind the change ring, cb gets
 * every live and stale entity first (ev ENTITY_EV_NONE: a snapshot) and the result is 1;
 * else 0. cb must not call back into the
 * service. max: at most this many calls (0: no cap); the rest come at the next call. */
#define ENTITY_CURSOR_START UINT64_MAX
typedef void (*entity_change_fn)(void *ctx, enum entity_event ev, const struct entity *e);
int entity_service_changes(struct entity_service *s, uint64_t *cursor, size_t max, entity_change_fn cb, void *ctx);

/* GET /api/v1/entities (list, with filters) and /api/v1/entities/<id or alias>. */
int entity_service_routes(struct entity_service *s, struct kz_http *h);

struct entity_service_stats {
	struct entity_table_stats table;
	uint64_t streams;  /* open now */
	uint64_t stream_resets; /* streams that fell behind the ring and started over */
	uint64_t invalid;  /* records on kz/entity/ that were not an update */
	uint64_t next_seq; /* the first log sequence not read yet */
};
void entity_service_stats(struct entity_service *s, struct entity_service_stats *out);

/* The table, for the API (entity_api.c): only between entity_service_lock(s, true) and
 * entity_service_lock(s, false). */
struct entity_table *entity_service_table(struct entity_service *s);
void entity_service_lock(struct entity_service *s, bool lock);
const struct entity_service_config *entity_service_config(const struct entity_service *s);

/* The node's record index, read only, opened at the first call; NULL with why when it cannot
 * be. Only between entity_service_index_lock(s, true) and (s, false). */
struct kz_index *entity_service_index(struct entity_service *s, char *why, size_t why_len);
void entity_service_index_lock(struct entity_service *s, bool lock);

/* GET /api/v1/entities/<id>/history (entity_history.c). */
struct kz_http_req;
void entity_history_get(struct entity_service *s, struct kz_http_req *r, const char *name);

#endif
