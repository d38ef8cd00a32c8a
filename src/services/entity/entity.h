/* entity.h — the entity picture's model (docs/ENTITIES.md): an update as it comes in a
 * record on kz/entity/<id>, decoded from its JSON, and the table of current entities with
 * the rules that apply updates to it (order by source time, alias merge, stale, expiry,
 * removal).
 *
 * An entity's life (status):
 *
 *     (none) --update--> LIVE --stale_time passes--> STALE --expiry_time passes--> REMOVED
 *                         ^  \                         |                              |
 *                         |   `--"status":"removed"----+---------------------------> REMOVED
 *                         `------ a newer update (source_time after the last) -------'
 *
 * A REMOVED entity stays in the table as a tombstone for `removed_keep_ms`, so that an
 * update older than the removal (replayed, or late from another node) cannot bring it back;
 * then it is forgotten.
 *
 * Invariants (entity_table_check):
 *  1. every entity's id and each of its aliases map to it, and nothing else maps to it;
 *  2. an alias maps to exactly one entity;
 *  3. n_live + n_stale + n_removed == the number of entities;
 *  4. stale_ns <= expiry_ns for every entity.
 *
 * Not thread safe: one table belongs to one thread (the entity service's). */
#ifndef KZ_ENTITY_H
#define KZ_ENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kz_buf;
struct kz_json_doc;

#define ENTITY_ID_MAX 128         /* bytes of an id or an alias */
#define ENTITY_MAX_ALIASES 8      /* aliases of one entity */
#define ENTITY_TEXT_MAX 256       /* bytes of a name, type, symbol or provenance field */
#define ENTITY_ATTR_MAX 4096      /* bytes of the attributes object's JSON text */

enum entity_status { ENTITY_LIVE = 1, ENTITY_STALE, ENTITY_REMOVED };

/* Which fields an update carries (partial updates change only these). */
enum {
	ENTITY_F_TYPE = 1u << 0,
	ENTITY_F_SYMBOL = 1u << 1,
	ENTITY_F_NAME = 1u << 2,
	ENTITY_F_POSITION = 1u << 3,
	ENTITY_F_MOTION = 1u << 4,
	ENTITY_F_SOURCE_TIME = 1u << 5,
	ENTITY_F_STALE_TIME = 1u << 6,
	ENTITY_F_EXPIRY_TIME = 1u << 7,
	ENTITY_F_ATTRIBUTES = 1u << 8,
	ENTITY_F_ADAPTER = 1u << 9,
	ENTITY_F_SENSOR = 1u << 10,
	ENTITY_F_REMOVED = 1u << 11, /* "status": "removed" */
};

/* Optional members of position and motion that were given. */
enum { ENTITY_HAS_HAE = 1u << 0, ENTITY_HAS_CE = 1u << 1, ENTITY_HAS_LE = 1u << 2 };
enum { ENTITY_HAS_COURSE = 1u << 0, ENTITY_HAS_SPEED = 1u << 1, ENTITY_HAS_CLIMB = 1u << 2 };

struct entity_position {
	double lat, lon; /* WGS 84 degrees */
	double hae;      /* height above the ellipsoid, m */
	double ce, le;   /* circular and linear error, m */
	uint8_t has;     /* ENTITY_HAS_* */
};

struct entity_motion {
	double course; /* degrees from true north, [0, 360) */
	double speed;  /* m/s, >= 0 */
	double climb;  /* m/s */
	uint8_t has;   /* ENTITY_HAS_COURSE... */
};

/* A decoded update. Its strings borrow from the kz_json_doc it was decoded with (valid until
 * the doc's next parse). */
struct entity_update {
	uint32_t has; /* ENTITY_F_* */
	const char *id;
	const char *aliases[ENTITY_MAX_ALIASES];
	unsigned n_aliases;
	const char *type, *symbol, *name, *adapter, *sensor;
	const char *attributes; /* the attributes object's JSON text (not NUL terminated) */
	size_t attributes_len;
	struct entity_position pos;
	struct entity_motion motion;
	uint64_t source_ns, stale_ns, expiry_ns; /* Unix ns */
};

/* Decodes one update (the payload of a record on kz/entity/<id>) into *u. 0, or -1 with
 * *why saying what is wrong (for a reason string or an HTTP error body). d is the caller's
 * (reused across calls). */
int entity_decode(struct kz_json_doc *d, const char *p, size_t n, struct entity_update *u, const char **why);

/* The check of a PUBLISH on kz/entity/<id> (mqtt_broker.payload_check): NULL for another
 * topic or a valid update whose id is the topic's last level, else why not. */
const char *entity_payload_check(struct kz_json_doc *d, const uint8_t *topic, size_t topic_len, const uint8_t *p,
				 size_t n);

/* True when s (len bytes) may be an entity id or alias: 1..ENTITY_ID_MAX bytes of
 * [A-Za-z0-9._:@~-] (it is also a topic level: no '/', '+', '#', '$' first). */
bool entity_id_valid(const char *s, size_t len);

/* ---------- the table ---------- */

/* Field groups that carry their own label when an update at another label than the
 * entity's set them (docs/ENTITIES.md "Field labels"). */
enum entity_group { ENTITY_G_TYPE, ENTITY_G_NAME, ENTITY_G_POSITION, ENTITY_G_MOTION, ENTITY_G_ATTRIBUTES,
		    ENTITY_G_PROVENANCE, ENTITY_G_N };
struct entity_flabels {
	const char *group[ENTITY_G_N];          /* interned label; NULL: the entity's */
	const char *alias[ENTITY_MAX_ALIASES];  /* of e->aliases[i]; NULL: the entity's */
};

struct entity {
	char *id;                               /* owns */
	char *aliases[ENTITY_MAX_ALIASES];      /* owns */
	uint8_t n_aliases;
	uint8_t status;                         /* enum entity_status */
	const char *type, *symbol, *name;       /* interned (the table owns them), NULL: unknown */
	const char *origin, *node, *adapter, *sensor; /* provenance, interned */
	const char *label;                      /* the entity's label: its creating update's (canonical
						 * text), interned */
	struct entity_flabels *fl;              /* owns; NULL: every field has the entity's label */
	char *attributes;                       /* owns: JSON object text, NUL terminated; NULL: none */
	struct entity_position pos;             /* pos.has bit 7: a position is known */
	struct entity_motion motion;            /* motion.has 0: none */
	uint64_t source_ns, received_ns, stale_ns, expiry_ns, removed_ns;
	uint64_t seq;                           /* log sequence of the last record applied */
	uint64_t version;                       /* changes applied (create = 1) */
	uint64_t change;                        /* the service's event number of its last event */
	uint32_t idx;                           /* its place in the table's array */
};

#define ENTITY_POS_KNOWN (1u << 7)

struct entity_table_config {
	uint32_t max_entities;      /* entities (tombstones included) at most */
	uint64_t default_stale_ms;  /* stale_time when an update has none: source_time + this */
	uint64_t default_expiry_ms; /* expiry_time when none: stale_time + this */
	uint64_t removed_keep_ms;   /* a tombstone is kept this long */
	uint32_t max_interned;      /* distinct interned strings at most */
};

/* Where an update came from (the record's envelope). Borrowed for the call. */
struct entity_source {
	uint64_t seq;         /* log sequence */
	uint64_t received_ns; /* the record's accept time */
	const char *origin;   /* the publisher's identity (SPIFFE ID) */
	const char *node;     /* the node that accepted it */
	const char *label;    /* canonical label text, or NULL/"" when unlabelled */
};

enum entity_event {
	ENTITY_EV_NONE = 0,  /* nothing changed (an older update, or the same again) */
	ENTITY_EV_CREATE,
	ENTITY_EV_UPDATE,
	ENTITY_EV_STALE,
	ENTITY_EV_REMOVE,
};

struct entity_table;

int entity_table_new(const struct entity_table_config *cfg, struct entity_table **out);
void entity_table_free(struct entity_table *t);

/* Applies u (from src) under the rules of docs/ENTITIES.md: *ev says what happened and *e
 * (when not NULL) is the entity it happened to (borrowed from the table until its next
 * change). 0; KZ_ETOOBIG when a new entity or string would exceed a cap (nothing changed);
 * KZ_ENOMEM (nothing changed). */
int entity_table_apply(struct entity_table *t, const struct entity_update *u, const struct entity_source *src,
		       enum entity_event *ev, struct entity **e);

/* Moves entities whose stale or expiry time passed (at now_ns) and forgets old tombstones;
 * cb is called for each STALE and REMOVE event (it must not change the table). */
typedef void (*entity_event_fn)(void *ctx, enum entity_event ev, const struct entity *e);
void entity_table_tick(struct entity_table *t, uint64_t now_ns, entity_event_fn cb, void *ctx);

/* While held (a counter), tick forgets no tombstone, so that entities keep their places in
 * the table's array: a stream's snapshot walks it by index across several writes. */
void entity_table_hold_forget(struct entity_table *t, bool hold);
/* The i-th entity of the table's array (NULL past the end), and how many there are. */
struct entity *entity_table_at(struct entity_table *t, size_t i);
size_t entity_table_count(const struct entity_table *t);

/* The entity an id or alias names, or NULL. */
struct entity *entity_table_find(struct entity_table *t, const char *id_or_alias);

/* Calls cb for every entity (tombstones included) until it returns non-zero. */
typedef int (*entity_each_fn)(void *ctx, const struct entity *e);
int entity_table_each(struct entity_table *t, entity_each_fn cb, void *ctx);

struct entity_table_stats {
	uint64_t live, stale, removed;       /* entities now */
	uint64_t applied, older, refused;    /* updates */
	uint64_t alias_moves;                /* aliases taken from one entity by another */
	uint64_t bytes;                      /* memory the table holds (approximate, counted) */
};
void entity_table_stats(const struct entity_table *t, struct entity_table_stats *out);

/* Appends e as the API's JSON object (docs/ENTITIES.md "Reading the picture"), without the
 * groups whose bit (1 << enum entity_group) is in hide and the aliases whose bit (1 << (8 +
 * i)) is; hide 0: everything. 0 or KZ_ENOMEM. */
int entity_to_json(const struct entity *e, struct kz_buf *b);
int entity_to_json_hiding(const struct entity *e, uint32_t hide, struct kz_buf *b);
#define ENTITY_HIDE_ALIAS(i) (1u << (8 + (i)))

/* Checks the invariants above (tests, asserts). */
bool entity_table_check(const struct entity_table *t);

#endif
