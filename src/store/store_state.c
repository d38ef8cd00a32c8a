/* store_state.c — persistent MQTT sessions in DIR/sessions.db (SQLite, WAL).
 *
 * Written at session events only — connect, subscribe, unsubscribe, disconnect, will,
 * end — and for the acknowledgement watermark about once a second per busy session; never
 * per message. WAL with synchronous=NORMAL: a process crash loses nothing committed; a
 * power loss can lose the last transactions (sessions then come back as they were a moment
 * earlier: subscriptions made in that moment are gone, and messages after an older
 * watermark are delivered again).
 *
 * Schema: session(client_id PK, expiry_s, offline_since_ns, acked_through, will fields, epoch),
 * sub(client_id, grp, filter, options; PK client_id, grp, filter). The epoch (a cluster's count
 * of the session's moves between nodes, docs/CLUSTER.md "Sessions") was added later: a database
 * without it gets the column at open. */
#include "store/store.h"
#include "base/kz_array.h"
#include "base/kz_err.h"

#include <pthread.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kz_state {
	sqlite3 *db;
	pthread_mutex_t lock;
};

static const char SCHEMA[] =
	"PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;"
	"CREATE TABLE IF NOT EXISTS session(client_id TEXT PRIMARY KEY, peer_id TEXT, expiry_s INTEGER NOT NULL,"
	" offline_since_ns INTEGER NOT NULL DEFAULT 0, acked_through INTEGER NOT NULL DEFAULT 0,"
	" will_topic BLOB, will_payload BLOB, will_props BLOB, will_qos INTEGER, will_retain INTEGER,"
	" will_delay_s INTEGER, will_expiry_s INTEGER, epoch INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS sub(client_id TEXT NOT NULL, grp TEXT NOT NULL, filter TEXT NOT NULL,"
	" qos INTEGER NOT NULL, rh INTEGER NOT NULL, nl INTEGER NOT NULL, rap INTEGER NOT NULL,"
	" sub_id INTEGER NOT NULL, PRIMARY KEY(client_id, grp, filter)) WITHOUT ROWID;";

int kz_state_open(const char *path, struct kz_state **out, char *why, size_t why_len)
{
	*out = NULL;
	struct kz_state *st = calloc(1, sizeof *st);
	if (!st)
		return KZ_ENOMEM;
	char *err = NULL;
	kz_sqlite_setup();
	if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK ||
	    sqlite3_exec(st->db, SCHEMA, NULL, NULL, &err) != SQLITE_OK) {
		snprintf(why, why_len, "sessions %s: %s", path, err ? err : sqlite3_errmsg(st->db));
		sqlite3_free(err);
		sqlite3_close(st->db);
		free(st);
		return KZ_EIO;
	}
	sqlite3_busy_timeout(st->db, 5000);
	sqlite3_stmt *probe = NULL;
	if (sqlite3_prepare_v2(st->db, "SELECT epoch FROM session LIMIT 0", -1, &probe, NULL) != SQLITE_OK &&
	    sqlite3_exec(st->db, "ALTER TABLE session ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0", NULL, NULL, &err) !=
		    SQLITE_OK) {
		snprintf(why, why_len, "sessions %s: adding the epoch column: %s", path, err ? err : sqlite3_errmsg(st->db));
		sqlite3_free(err);
		sqlite3_finalize(probe);
		sqlite3_close(st->db);
		free(st);
		return KZ_EIO;
	}
	sqlite3_finalize(probe);
	pthread_mutex_init(&st->lock, NULL);
	*out = st;
	return KZ_OK;
}

void kz_state_close(struct kz_state *st)
{
	if (!st)
		return;
	sqlite3_close(st->db);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

/* Runs one statement with the given binds: 't' text (const char *), 'i' int64, 'b' bytes
 * (struct kz_bytes *), 'n' NULL. */
static int run(struct kz_state *st, const char *sql, const char *types, ...)
{
	va_list ap;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return KZ_EIO;
	va_start(ap, types);
	for (int i = 0; types[i]; i++) {
		switch (types[i]) {
		case 't': {
			const char *v = va_arg(ap, const char *);
			sqlite3_bind_text(s, i + 1, v, -1, SQLITE_TRANSIENT);
			break;
		}
		case 'i': sqlite3_bind_int64(s, i + 1, va_arg(ap, int64_t)); break;
		case 'b': {
			const struct kz_bytes *b = va_arg(ap, const struct kz_bytes *);
			sqlite3_bind_blob(s, i + 1, b->len ? (const void *)b->p : "", (int)b->len, SQLITE_TRANSIENT);
			break;
		}
		default: sqlite3_bind_null(s, i + 1); break;
		}
	}
	va_end(ap);
	int rc = sqlite3_step(s) == SQLITE_DONE ? KZ_OK : KZ_EIO;
	sqlite3_finalize(s);
	return rc;
}

int kz_state_connected(struct kz_state *st, const char *id, const char *peer_id, uint32_t expiry_s,
		       const struct kz_state_will *w, bool fresh, uint64_t acked_through, uint64_t epoch)
{
	pthread_mutex_lock(&st->lock);
	int rc = sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK ? KZ_OK : KZ_EIO;
	if (!rc && fresh)
		rc = run(st, "DELETE FROM sub WHERE client_id = ?", "t", id);
	if (!rc && w)
		rc = run(st,
			 "INSERT OR REPLACE INTO session(client_id, peer_id, expiry_s, offline_since_ns, acked_through, "
			 "will_topic, will_payload, will_props, will_qos, will_retain, will_delay_s, will_expiry_s, epoch) "
			 "VALUES(?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			 "ttiibbbiiiii", id, peer_id ? peer_id : "", (int64_t)expiry_s, (int64_t)acked_through, &w->topic,
			 &w->payload, &w->props, (int64_t)w->qos, (int64_t)w->retain, (int64_t)w->delay_s,
			 w->has_expiry ? (int64_t)w->expiry_s : (int64_t)-1, (int64_t)epoch);
	else if (!rc)
		rc = run(st, "INSERT OR REPLACE INTO session(client_id, peer_id, expiry_s, offline_since_ns, acked_through, epoch) "
			     "VALUES(?, ?, ?, 0, ?, ?)", "ttiii", id, peer_id ? peer_id : "", (int64_t)expiry_s,
			 (int64_t)acked_through, (int64_t)epoch);
	rc = sqlite3_exec(st->db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? rc : KZ_EIO;
	pthread_mutex_unlock(&st->lock);
	return rc;
}

#define ONE(sql, types, ...)                                   \
	do {                                                   \
		pthread_mutex_lock(&st->lock);                 \
		int rc_ = run(st, sql, types, __VA_ARGS__);    \
		pthread_mutex_unlock(&st->lock);               \
		return rc_;                                    \
	} while (0)

int kz_state_offline(struct kz_state *st, const char *id, uint64_t since_ns, uint32_t expiry_s)
{
	ONE("UPDATE session SET offline_since_ns = ?, expiry_s = ? WHERE client_id = ?", "iit", (int64_t)since_ns,
	    (int64_t)expiry_s, id);
}

int kz_state_will_done(struct kz_state *st, const char *id)
{
	ONE("UPDATE session SET will_topic = NULL WHERE client_id = ?", "t", id);
}

int kz_state_acked(struct kz_state *st, const char *id, uint64_t acked_through)
{
	ONE("UPDATE session SET acked_through = ? WHERE client_id = ?", "it", (int64_t)acked_through, id);
}

int kz_state_sub_put(struct kz_state *st, const char *id, const struct kz_state_sub *s)
{
	ONE("INSERT OR REPLACE INTO sub VALUES(?, ?, ?, ?, ?, ?, ?, ?)", "tttiiiii", id, s->group ? s->group : "",
	    s->filter, (int64_t)s->qos, (int64_t)s->retain_handling, (int64_t)s->no_local,
	    (int64_t)s->retain_as_published, (int64_t)s->sub_id);
}

int kz_state_sub_del(struct kz_state *st, const char *id, const char *group, const char *filter)
{
	ONE("DELETE FROM sub WHERE client_id = ? AND grp = ? AND filter = ?", "ttt", id, group ? group : "", filter);
}

int kz_state_ended(struct kz_state *st, const char *id)
{
	pthread_mutex_lock(&st->lock);
	int rc = run(st, "DELETE FROM sub WHERE client_id = ?", "t", id);
	if (!rc)
		rc = run(st, "DELETE FROM session WHERE client_id = ?", "t", id);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

static struct kz_bytes col_bytes(sqlite3_stmt *s, int i)
{
	return (struct kz_bytes){ sqlite3_column_blob(s, i), (uint32_t)sqlite3_column_bytes(s, i) };
}

int kz_state_load(struct kz_state *st, int (*cb)(void *ctx, const struct kz_state_session *ss), void *ctx,
		  char *why, size_t why_len)
{
	pthread_mutex_lock(&st->lock);
	sqlite3_stmt *q = NULL, *qs = NULL;
	int rc = KZ_OK;
	if (sqlite3_prepare_v2(st->db, "SELECT client_id, expiry_s, offline_since_ns, acked_through, will_topic, "
					"will_payload, will_props, will_qos, will_retain, will_delay_s, will_expiry_s, peer_id, "
					"epoch FROM session", -1, &q, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(st->db, "SELECT grp, filter, qos, rh, nl, rap, sub_id FROM sub WHERE client_id = ?",
			       -1, &qs, NULL) != SQLITE_OK) {
		snprintf(why, why_len, "sessions: %s", sqlite3_errmsg(st->db));
		rc = KZ_EIO;
	}
	struct kz_state_sub *subs = NULL;
	size_t cap = 0;
	while (!rc && sqlite3_step(q) == SQLITE_ROW) {
		struct kz_state_session ss = {
			.client_id = (const char *)sqlite3_column_text(q, 0),
			.expiry_s = (uint32_t)sqlite3_column_int64(q, 1),
			.offline_since_ns = (uint64_t)sqlite3_column_int64(q, 2),
			.acked_through = (uint64_t)sqlite3_column_int64(q, 3),
			.peer_id = (const char *)sqlite3_column_text(q, 11),
			.epoch = (uint64_t)sqlite3_column_int64(q, 12),
		};
		struct kz_state_will w;
		if (sqlite3_column_type(q, 4) != SQLITE_NULL) {
			w = (struct kz_state_will){ .topic = col_bytes(q, 4), .payload = col_bytes(q, 5),
						    .props = col_bytes(q, 6), .qos = (uint8_t)sqlite3_column_int(q, 7),
						    .retain = sqlite3_column_int(q, 8) != 0,
						    .delay_s = (uint32_t)sqlite3_column_int64(q, 9) };
			int64_t e = sqlite3_column_int64(q, 10);
			w.has_expiry = e >= 0;
			w.expiry_s = e >= 0 ? (uint32_t)e : 0;
			ss.will = &w;
		}
		sqlite3_reset(qs);
		sqlite3_bind_text(qs, 1, ss.client_id, -1, SQLITE_STATIC);
		size_t n = 0;
		while (sqlite3_step(qs) == SQLITE_ROW) {
			if (n == cap) {
				struct kz_state_sub *nv = kz_array_grow(subs, sizeof *nv, cap, n + 1, 16, SIZE_MAX, &cap);
				if (!nv) {
					rc = KZ_ENOMEM;
					break;
				}
				subs = nv;
			}
			const char *g = (const char *)sqlite3_column_text(qs, 0);
			subs[n++] = (struct kz_state_sub){
				.group = g && g[0] ? strdup(g) : NULL,
				.filter = strdup((const char *)sqlite3_column_text(qs, 1)),
				.qos = (uint8_t)sqlite3_column_int(qs, 2), .retain_handling = (uint8_t)sqlite3_column_int(qs, 3),
				.no_local = sqlite3_column_int(qs, 4) != 0, .retain_as_published = sqlite3_column_int(qs, 5) != 0,
				.sub_id = (uint32_t)sqlite3_column_int64(qs, 6),
			};
		}
		ss.subs = subs;
		ss.n_subs = n;
		if (!rc)
			rc = cb(ctx, &ss);
		for (size_t i = 0; i < n; i++) {
			free((char *)subs[i].group);
			free((char *)subs[i].filter);
		}
	}
	free(subs);
	sqlite3_finalize(q);
	sqlite3_finalize(qs);
	pthread_mutex_unlock(&st->lock);
	return rc;
}
