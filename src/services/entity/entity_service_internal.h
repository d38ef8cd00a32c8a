/* entity_service_internal.h — the entity service's state, for its parts (entity_service.c,
 * entity_stream.c). */
#ifndef KZ_ENTITY_SERVICE_INTERNAL_H
#define KZ_ENTITY_SERVICE_INTERNAL_H

#include "services/entity/entity_service.h"
#include "base/kz_json.h"
#include "store/store.h"

#include <pthread.h>

struct kz_http_req;

/* One event of the picture, in the change ring. */
struct entity_change {
	uint64_t change;              /* its number */
	uint8_t ev;                   /* enum entity_event */
	char id[ENTITY_ID_MAX + 1];   /* the entity's id (it may be gone by the time a stream reads) */
	char *json;                   /* owns: the entity as the API's JSON, made by the first stream
				       * that writes this event and shared by the others; NULL: not yet */
	uint32_t json_len;
};

struct entity_stream;

struct entity_service {
	struct entity_service_config cfg;
	struct entity_table *t;
	pthread_mutex_t lock; /* the table, next_seq, counters */
	pthread_cond_t cond;
	pthread_t th;
	bool started, stop, kicked;
	uint64_t next_seq;       /* the first log sequence not looked at yet */
	struct kz_reclog_pos hint; /* where the record before next_seq is (has_hint) */
	bool has_hint;
	uint64_t invalid;        /* records on kz/entity/ that are not an update (counted, skipped) */
	struct kz_json_doc doc;  /* the tail thread's (and the rebuild's) */
	/* the change ring (docs/ENTITIES.md "The stream"): event c is at ring[(c - 1) % ring_cap]
	 * while c > last_change - ring_cap; streams read it behind their cursor */
	struct entity_change *ring;
	uint32_t ring_cap;
	uint64_t last_change;    /* the number of the last event (0: none yet) */
	uint64_t epoch;          /* this process's: event ids are "<epoch>-<change>" */
	struct entity_stream *streams; /* open streams (under lock) */
	uint32_t n_streams;
	uint64_t stream_resets;
	pthread_mutex_t ix_lock; /* the read-only index (history) */
	struct kz_index *ix;
	char index_path[1100], log_dir[1100];
};

/* Records an event of e: its number, in e->change and in the ring (lock held). */
void entity_service_push(struct entity_service *s, enum entity_event ev, struct entity *e);
/* Wakes every open stream (lock held). */
void entity_service_wake_streams(struct entity_service *s);
/* Frees what is left of the streams (the service closes; the workers have ended). */
void entity_streams_drop(struct entity_service *s);
/* GET /api/v1/stream/entities (entity_stream.c). */
void entity_stream_get(struct entity_service *s, struct kz_http_req *r);

#endif
