/* store_index.c — the SQLite index derived from the record log, and retention (queries:
 * store_index_query.c).
 *
 * The log is the source of truth. The index (DIR/index.db, WAL mode) has one row per
 * record — where it is (segment, offset), its size, and the fields queries select on — plus
 * each topic's retained message. It is written by one thread only (the node's index thread,
 * or an offline command holding the data directory lock) and read by anyone; it can be
 * deleted at any time and is rebuilt from the log.
 *
 * Crash safety: every change to the index commits together with meta.through (the last seq
 * indexed) and meta.pos (that record's position), so after a crash indexing resumes exactly
 * where the last commit left it. A retention rewrite is bracketed by meta.rewriting = the
 * segment's base: set and committed before the file changes, cleared in the transaction
 * that re-indexes the new file. An index opened with the marker set re-indexes that
 * segment from whatever file is there (old, new or none).
 *
 * Retention runs here too, so it never competes with delivery for the store thread: it
 * marks the records the rules drop in a temporary table, then rewrites each closed segment
 * where enough of them are. */
#include "store/store.h"
#include "store/store_index_internal.h"
#include "base/kz_array.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "base/kz_hash.h"
#include "base/kz_topic.h"

#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_VERSION 2
#define INTERN_SLOTS 65536 /* cached ids per table; the cache starts over when half full */

int kz_retention_match(const struct kz_retention_rule *rules, size_t n, const uint8_t *topic,
		       size_t topic_len)
{
	for (size_t i = 0; i < n; i++)
		if (kz_topic_match((const uint8_t *)rules[i].filter, strlen(rules[i].filter), topic, topic_len))
			return (int)i;
	return -1;
}

/* ---------- small SQLite helpers ---------- */

int kz_index_sql_fail(struct kz_index *ix, const char *what, char *why, size_t why_len)
{
	snprintf(why, why_len, "index: %s: %s", what, sqlite3_errmsg(ix->db));
	return KZ_EIO;
}

static int exec(struct kz_index *ix, const char *sql, char *why, size_t why_len)
{
	char *err = NULL;
	if (sqlite3_exec(ix->db, sql, NULL, NULL, &err) != SQLITE_OK) {
		snprintf(why, why_len, "index: %s", err ? err : "error");
		sqlite3_free(err);
		return KZ_EIO;
	}
	return KZ_OK;
}

static int meta_get_u64(struct kz_index *ix, const char *k, uint64_t *v)
{
	sqlite3_stmt *st;
	*v = 0;
	if (sqlite3_prepare_v2(ix->db, "SELECT v FROM meta WHERE k=?", -1, &st, NULL) != SQLITE_OK)
		return KZ_EIO;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	int found = sqlite3_step(st) == SQLITE_ROW;
	if (found)
		*v = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return found ? KZ_OK : KZ_ENOTFOUND;
}

static int meta_set(struct kz_index *ix, const char *k, uint64_t v, const char *text)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ix->db, "INSERT OR REPLACE INTO meta(k, v) VALUES(?, ?)", -1, &st, NULL) != SQLITE_OK)
		return KZ_EIO;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	if (text)
		sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
	else
		sqlite3_bind_int64(st, 2, (sqlite3_int64)v);
	int rc = sqlite3_step(st) == SQLITE_DONE ? KZ_OK : KZ_EIO;
	sqlite3_finalize(st);
	return rc;
}

static int meta_del(struct kz_index *ix, const char *k)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ix->db, "DELETE FROM meta WHERE k=?", -1, &st, NULL) != SQLITE_OK)
		return KZ_EIO;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st) == SQLITE_DONE ? KZ_OK : KZ_EIO;
	sqlite3_finalize(st);
	return rc;
}

/* The resume position (through, segment, offset) in one statement, so one snapshot: a
 * read-only reader must not pair a "through" the node committed just now with the
 * offset of an earlier commit (that pair names a record that is not there). */
static void load_position(struct kz_index *ix)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ix->db, "SELECT k, v FROM meta WHERE k IN ('through', 'pos_seg', 'pos_off')", -1, &st,
			       NULL) != SQLITE_OK)
		return;
	uint64_t through = 0;
	struct kz_reclog_pos pos = { 0, 0 };
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(st, 0);
		uint64_t v = (uint64_t)sqlite3_column_int64(st, 1);
		if (!k)
			continue;
		if (!strcmp(k, "through"))
			through = v;
		else if (!strcmp(k, "pos_seg"))
			pos.seg = v;
		else
			pos.off = v;
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE) { /* else (busy, I/O): keep what we had, a consistent older pair */
		ix->through = through;
		ix->pos = pos;
	}
}

static int save_position(struct kz_index *ix)
{
	if (meta_set(ix, "through", ix->through, NULL) || meta_set(ix, "pos_seg", ix->pos.seg, NULL) ||
	    meta_set(ix, "pos_off", ix->pos.off, NULL))
		return KZ_EIO;
	return KZ_OK;
}

/* kz_match(filter, topic): MQTT filter matching inside SQL. */
static void sql_match(sqlite3_context *c, int argc, sqlite3_value **v)
{
	(void)argc;
	const uint8_t *f = sqlite3_value_text(v[0]), *t = sqlite3_value_text(v[1]);
	if (!f || !t) {
		sqlite3_result_int(c, 0);
		return;
	}
	sqlite3_result_int(c, kz_topic_match(f, (size_t)sqlite3_value_bytes(v[0]), t,
					     (size_t)sqlite3_value_bytes(v[1])));
}

/* kz_rule(topic): the index of the governing retention rule, or NULL. */
static void sql_rule(sqlite3_context *c, int argc, sqlite3_value **v)
{
	(void)argc;
	struct kz_index *ix = sqlite3_user_data(c);
	const uint8_t *t = sqlite3_value_text(v[0]);
	int r = t ? kz_retention_match(ix->rules, ix->n_rules, t, (size_t)sqlite3_value_bytes(v[0])) : -1;
	if (r < 0)
		sqlite3_result_null(c);
	else
		sqlite3_result_int(c, r);
}

static const char SCHEMA[] =
	"CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS topic(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
	"CREATE TABLE IF NOT EXISTS origin(id INTEGER PRIMARY KEY, node TEXT NOT NULL, ident TEXT NOT NULL,"
	" UNIQUE(node, ident));"
	"CREATE INDEX IF NOT EXISTS origin_ident ON origin(ident);"
	"CREATE TABLE IF NOT EXISTS ctype(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
	"CREATE TABLE IF NOT EXISTS rec("
	" seq INTEGER PRIMARY KEY, seg INTEGER NOT NULL, off INTEGER NOT NULL,"
	" bytes INTEGER NOT NULL, time_ns INTEGER NOT NULL, id BLOB NOT NULL, topic INTEGER NOT NULL,"
	" origin INTEGER NOT NULL, label BLOB, ctype INTEGER, rule INTEGER, retain INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS rec_topic ON rec(topic, time_ns);"
	"CREATE INDEX IF NOT EXISTS rec_time ON rec(time_ns);"
	"CREATE INDEX IF NOT EXISTS rec_origin ON rec(origin, time_ns);"
	"CREATE INDEX IF NOT EXISTS rec_label ON rec(label, time_ns) WHERE label IS NOT NULL;"
	"CREATE INDEX IF NOT EXISTS rec_ctype ON rec(ctype, time_ns) WHERE ctype IS NOT NULL;"
	"CREATE INDEX IF NOT EXISTS rec_rule ON rec(rule, topic, seq) WHERE rule IS NOT NULL;"
	"CREATE TABLE IF NOT EXISTS retained(topic INTEGER PRIMARY KEY, seq INTEGER NOT NULL);";

/* An index of another schema version is derived data: drop it and build it again. */
static const char DROP_ALL[] =
	"DROP TABLE IF EXISTS rec; DROP TABLE IF EXISTS retained; DROP TABLE IF EXISTS topic;"
	"DROP TABLE IF EXISTS origin; DROP TABLE IF EXISTS ctype; DELETE FROM meta;";

static void intern_reset(struct intern *t)
{
	if (t->slot)
		for (uint32_t i = 0; i < INTERN_SLOTS; i++) {
			free(t->slot[i].key);
			t->slot[i].key = NULL;
		}
	t->n = 0;
}

static void intern_free(struct intern *t)
{
	intern_reset(t);
	free(t->slot);
	sqlite3_finalize(t->sel);
	sqlite3_finalize(t->ins);
}

/* The id of (a, b) in t's table (b NULL for one-column tables), inserted when new; -1 on
 * an error. Ids handed out in a transaction that rolls back are forgotten (intern_reset). */
static int64_t intern(struct intern *t, const struct kz_bytes *a, const struct kz_bytes *b)
{
	size_t kl = a->len + (b ? b->len + 1 : 0);
	char *key = malloc(kl + 1);
	if (!key)
		return -1;
	memcpy(key, a->p, a->len);
	if (b) {
		key[a->len] = 0;
		memcpy(key + a->len + 1, b->p, b->len);
	}
	key[kl] = (char)0xFF; /* UTF-8 never has 0xFF: keys compare exactly with their length */
	uint64_t h = kz_hash(key, kl);
	uint32_t i = (uint32_t)h & (INTERN_SLOTS - 1);
	for (; t->slot && t->slot[i].key; i = (i + 1) & (INTERN_SLOTS - 1))
		if (t->slot[i].h == h && memcmp(t->slot[i].key, key, kl + 1) == 0) {
			free(key);
			return t->slot[i].id;
		}
	int64_t id = -1;
	for (int pass = 0; pass < 2 && id < 0; pass++) {
		sqlite3_stmt *st = pass ? t->ins : t->sel;
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, (const char *)a->p, (int)a->len, SQLITE_STATIC);
		if (b)
			sqlite3_bind_text(st, 2, (const char *)b->p, (int)b->len, SQLITE_STATIC);
		int rc = sqlite3_step(st);
		if (!pass && rc == SQLITE_ROW)
			id = sqlite3_column_int64(st, 0);
		else if (pass && rc == SQLITE_DONE)
			id = sqlite3_last_insert_rowid(sqlite3_db_handle(st));
		else if (pass || rc != SQLITE_DONE)
			break;
	}
	if (id < 0 || (!t->slot && !(t->slot = calloc(INTERN_SLOTS, sizeof *t->slot)))) {
		free(key);
		return id;
	}
	if (t->n >= INTERN_SLOTS / 2) { /* keep probes short: start over */
		intern_reset(t);
		i = (uint32_t)h & (INTERN_SLOTS - 1);
	}
	t->slot[i].h = h;
	t->slot[i].id = id;
	t->slot[i].key = key;
	t->n++;
	return id;
}

static void interns_reset(struct kz_index *ix)
{
	intern_reset(&ix->topics);
	intern_reset(&ix->origins);
	intern_reset(&ix->ctypes);
}

/* The rules' filters, one per line: when they change, every record's rule is re-derived. */
static char *rules_fingerprint(const struct kz_index *ix)
{
	size_t n = 1;
	for (size_t i = 0; i < ix->n_rules; i++)
		n += strlen(ix->rules[i].filter) + 1;
	char *s = malloc(n), *p = s;
	if (!s)
		return NULL;
	for (size_t i = 0; i < ix->n_rules; i++)
		p += sprintf(p, "%s\n", ix->rules[i].filter);
	*p = 0;
	return s;
}

/* ---------- indexing ---------- */

struct idx_ctx {
	struct kz_index *ix;
	uint64_t max, added;
	uint64_t stop_before;  /* segment re-index: stop at this seq */
	bool rows_only;        /* segment re-index: leave `retained` and the position alone */
	int err;
};

static int index_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	struct idx_ctx *c = ctx;
	struct kz_index *ix = c->ix;
	if (seq >= c->stop_before)
		return 1;
	struct kz_record r;
	const char *what;
	if (kz_record_decode(body, n, &r, &what)) {
		/* CRC-valid but not a record this version understands: leave it out of the index. */
		kz_warn("index: record %" PRIu64 " not indexed: %s", seq, what);
	} else if (r.topic.len >= strlen(KZ_TOPIC_TAXII) && memcmp(r.topic.p, KZ_TOPIC_TAXII, strlen(KZ_TOPIC_TAXII)) == 0) {
		/* STIX objects: the TAXII service derives its own index from the log (one topic per
		 * object version would swamp the topic table), and retention never drops them */
	} else {
		sqlite3_stmt *st = ix->ins;
		int ri = kz_retention_match(ix->rules, ix->n_rules, r.topic.p, r.topic.len);
		int64_t topic = intern(&ix->topics, &r.topic, NULL);
		int64_t origin = intern(&ix->origins, &r.origin_node, &r.origin_id);
		int64_t ctype = r.content_type.len ? intern(&ix->ctypes, &r.content_type, NULL) : 0;
		if (topic < 0 || origin < 0 || ctype < 0) {
			c->err = KZ_EIO;
			return 1;
		}
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)pos->seg);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)pos->off);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)(n + 16));
		sqlite3_bind_int64(st, 5, (sqlite3_int64)r.time_ns);
		sqlite3_bind_blob(st, 6, r.id, 16, SQLITE_STATIC);
		sqlite3_bind_int64(st, 7, topic);
		sqlite3_bind_int64(st, 8, origin);
		if (r.label.len)
			sqlite3_bind_blob(st, 9, r.label.p, (int)r.label.len, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 9);
		if (ctype)
			sqlite3_bind_int64(st, 10, ctype);
		else
			sqlite3_bind_null(st, 10);
		if (ri >= 0)
			sqlite3_bind_int(st, 11, ri);
		else
			sqlite3_bind_null(st, 11);
		sqlite3_bind_int(st, 12, r.retain);
		if (sqlite3_step(st) != SQLITE_DONE) {
			c->err = KZ_EIO;
			return 1;
		}
		if (r.retain && !c->rows_only) {
			/* MQTT 5.0 §3.3.1.3: a retained message with an empty payload removes the
			 * topic's retained message. */
			st = r.payload.len ? ix->ret_set : ix->ret_del;
			sqlite3_reset(st);
			sqlite3_bind_int64(st, 1, topic);
			if (r.payload.len)
				sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
			if (sqlite3_step(st) != SQLITE_DONE) {
				c->err = KZ_EIO;
				return 1;
			}
		}
	}
	if (!c->rows_only) {
		ix->through = seq;
		ix->pos = *pos;
	}
	c->added++;
	return c->max && c->added >= c->max;
}

int kz_index_catch_up(struct kz_index *ix, uint64_t max, uint64_t *added, char *why, size_t why_len)
{
	*added = 0;
	if (ix->read_only)
		return KZ_OK;
	if (exec(ix, "BEGIN", why, why_len))
		return KZ_EIO;
	struct idx_ctx c = { .ix = ix, .max = max, .stop_before = UINT64_MAX };
	uint64_t through0 = ix->through;
	struct kz_reclog_pos pos0 = ix->pos;
	int rc = kz_reclog_scan(ix->log_dir, ix->through + 1, ix->pos.off ? &ix->pos : NULL,
			     ix->max_record_bytes, index_cb, &c, why, why_len);
	if (rc == 1)
		rc = KZ_OK;
	if (!rc && c.err)
		rc = kz_index_sql_fail(ix, "insert", why, why_len);
	if (!rc && c.added && save_position(ix))
		rc = kz_index_sql_fail(ix, "save position", why, why_len);
	if (!rc && exec(ix, "COMMIT", why, why_len))
		rc = KZ_EIO;
	if (rc) {
		(void)sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
		interns_reset(ix);
		ix->through = through0;
		ix->pos = pos0;
		return rc;
	}
	*added = c.added;
	return KZ_OK;
}

static int index_check_rows(struct kz_index *ix, uint64_t log_next, uint64_t through, uint64_t hw, char *why,
			    size_t why_len)
{
	sqlite3_stmt *st;
	if (hw >= log_next) {
		snprintf(why, why_len, "it has records up to %" PRIu64 " but the log ends at %" PRIu64
			 " (the log's tail was cut or the log was replaced)", hw, log_next - 1);
		return 1;
	}
	struct kz_buf b;
	kz_buf_init(&b, 0);
	int bad = 0;
	if (ix->pos.off && through) {
		int rc = kz_reclog_read(&ix->rd, &ix->pos, through, &b);
		if (rc == KZ_ENOTFOUND || rc == KZ_EIO) {
			snprintf(why, why_len, "record %" PRIu64 " is not where it says (segment %" PRIu64 ", offset %" PRIu64 ")",
				 through, ix->pos.seg, ix->pos.off);
			bad = 1;
		}
	}
	if (!bad && sqlite3_prepare_v2(ix->db, "SELECT seq, seg, off, id FROM rec ORDER BY seq DESC LIMIT 16", -1, &st,
				       NULL) == SQLITE_OK) {
		while (!bad && sqlite3_step(st) == SQLITE_ROW) {
			uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
			struct kz_reclog_pos p = { (uint64_t)sqlite3_column_int64(st, 1), (uint64_t)sqlite3_column_int64(st, 2) };
			const void *id = sqlite3_column_blob(st, 3);
			int rc = kz_reclog_read(&ix->rd, &p, seq, &b);
			if (rc == KZ_ENOMEM)
				break;
			struct kz_record r;
			const char *what;
			if (rc || kz_record_decode(kz_buf_head(&b), b.len, &r, &what) || !id ||
			    sqlite3_column_bytes(st, 3) != 16 || memcmp(r.id, id, 16) != 0) {
				snprintf(why, why_len, "its row for record %" PRIu64 " does not match the log (segment %" PRIu64
					 ", offset %" PRIu64 ")", seq, p.seg, p.off);
				bad = 1;
			}
		}
		sqlite3_finalize(st);
	}
	kz_reclog_reader_close(&ix->rd);
	kz_buf_cleanup(&b);
	return bad;
}

/* Does the index describe this log? Its high-water mark must be below the log's end, and
 * its last rows (and the position it resumes from) must name the record that is really
 * there: same sequence number at that place, same record id. 0 when they agree; 1 with
 * *why when not, and *hw the highest sequence number the index knows. */
int kz_index_check(struct kz_index *ix, uint64_t log_next, uint64_t *hw, char *why, size_t why_len)
{
	/* A reader beside a live node: one read transaction (WAL snapshot) for the position
	 * and the rows, and the log's end read after it is taken, so that every record the
	 * snapshot names was already in the log. */
	bool snap = ix->read_only && exec(ix, "BEGIN", why, why_len) == KZ_OK;
	uint64_t through = kz_index_through(ix); /* the snapshot starts here */
	*hw = through;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ix->db, "SELECT max(seq) FROM rec", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL &&
	    (uint64_t)sqlite3_column_int64(st, 0) > *hw)
		*hw = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (log_next == KZ_INDEX_LOG_END_NOW)
		log_next = kz_reclog_next_in(ix->log_dir, ix->max_record_bytes);
	int bad = index_check_rows(ix, log_next, through, *hw, why, why_len);
	if (snap)
		(void)sqlite3_exec(ix->db, "COMMIT", NULL, NULL, NULL);
	return bad;
}

uint64_t kz_index_through(struct kz_index *ix)
{
	if (ix->read_only) /* another connection writes: read what it committed last */
		load_position(ix);
	return ix->through;
}

/* Replaces the rows of segment base (seqs [base, next)) with what its file holds now. Inside
 * the caller's transaction. */
static int reindex_segment(struct kz_index *ix, uint64_t base, uint64_t next, char *why, size_t why_len)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ix->db, "DELETE FROM rec WHERE seq >= ? AND seq < ?", -1, &st, NULL) != SQLITE_OK)
		return kz_index_sql_fail(ix, "prepare", why, why_len);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)base);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)next);
	int rc = sqlite3_step(st) == SQLITE_DONE ? KZ_OK : KZ_EIO;
	sqlite3_finalize(st);
	if (rc)
		return kz_index_sql_fail(ix, "delete", why, why_len);
	/* Only what was indexed before: newer records come with the next catch-up. */
	uint64_t stop = next < ix->through + 1 ? next : ix->through + 1;
	struct idx_ctx c = { .ix = ix, .stop_before = stop, .rows_only = true };
	rc = kz_reclog_scan(ix->log_dir, base, NULL, ix->max_record_bytes, index_cb, &c, why, why_len);
	if (rc == 1)
		rc = KZ_OK;
	if (!rc && c.err)
		rc = kz_index_sql_fail(ix, "insert", why, why_len);
	if (!rc && ix->pos.seg == base)
		ix->pos.off = 0; /* offsets moved: the next catch-up finds its place by seq */
	return rc;
}

/* The base of the segment after `base` in the log now, or UINT64_MAX. */
static uint64_t next_segment(struct kz_index *ix, uint64_t base)
{
	uint64_t *bases, next = UINT64_MAX;
	size_t n;
	if (kz_reclog_segments(ix->log_dir, &bases, &n) == KZ_OK)
		for (size_t i = 0; i < n; i++)
			if (bases[i] > base) {
				next = bases[i];
				break;
			}
	free(bases);
	return next;
}

static int finish_rewrite(struct kz_index *ix, uint64_t base, char *why, size_t why_len)
{
	if (exec(ix, "BEGIN", why, why_len))
		return KZ_EIO;
	int rc = reindex_segment(ix, base, next_segment(ix, base), why, why_len);
	if (!rc && (meta_del(ix, "rewriting") || save_position(ix)))
		rc = kz_index_sql_fail(ix, "meta", why, why_len);
	if (!rc && exec(ix, "COMMIT", why, why_len))
		rc = KZ_EIO;
	if (rc) {
		(void)sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
		interns_reset(ix);
	}
	return rc;
}

/* ---------- open and close ---------- */

static void sqlite_setup_once(void)
{
	/* SQLITE_CONFIG_PAGECACHE with no buffer and N = 0: no initial bulk allocation of page
	 * cache lines per connection (about 85 kB each, written through at once) */
	sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
}

void kz_sqlite_setup(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, sqlite_setup_once);
}

int kz_index_open(const struct kz_index_config *cfg, struct kz_index **out, char *why, size_t why_len)
{
	*out = NULL;
	struct kz_index *ix = calloc(1, sizeof *ix);
	if (!ix)
		return KZ_ENOMEM;
	ix->log_dir = strdup(cfg->log_dir);
	ix->max_record_bytes = cfg->max_record_bytes;
	ix->read_only = cfg->read_only;
	kz_buf_init(&ix->buf, 0);
	if (cfg->n_rules) {
		ix->rules = malloc(cfg->n_rules * sizeof *ix->rules);
		if (ix->rules)
			memcpy(ix->rules, cfg->rules, cfg->n_rules * sizeof *ix->rules);
	}
	ix->n_rules = ix->rules ? cfg->n_rules : 0;
	kz_reclog_reader_init(&ix->rd, ix->log_dir, cfg->max_record_bytes);
	int flags = cfg->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	if (!ix->log_dir || (cfg->n_rules && !ix->rules)) {
		kz_index_close(ix);
		return KZ_ENOMEM;
	}
	kz_sqlite_setup();
	if (sqlite3_open_v2(cfg->path, &ix->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		snprintf(why, why_len, "index %s: %s", cfg->path, ix->db ? sqlite3_errmsg(ix->db) : "cannot open");
		kz_index_close(ix);
		return KZ_EIO;
	}
	sqlite3_busy_timeout(ix->db, 5000);
	sqlite3_create_function(ix->db, "kz_match", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, sql_match, NULL, NULL);
	sqlite3_create_function(ix->db, "kz_rule", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, ix, sql_rule, NULL, NULL);
	/* A file that is not a database (or whose header is damaged) says so at the first read. */
	int rc = sqlite3_exec(ix->db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) == SQLITE_OK ? KZ_OK : KZ_EIO;
	if (rc)
		snprintf(why, why_len, "index %s: %s", cfg->path, sqlite3_errmsg(ix->db));
	/* SQLite's temporary files (a large sort) would go to /var/tmp or /tmp: index data outside
	 * the data directory, and a query that fails where those are read-only */
	if (!rc && cfg->read_only)
		rc = exec(ix, "PRAGMA temp_store=MEMORY;", why, why_len);
	if (!rc && !cfg->read_only) {
		/* The index is derived: NORMAL keeps it consistent through crashes (WAL); what a
		 * power loss takes from its tail is indexed again from the log. */
		rc = exec(ix, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;"
			  " PRAGMA cache_size=-16384;",
			  why, why_len);
		uint64_t v = 0;
		if (!rc)
			rc = exec(ix, "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID;", why, why_len);
		if (!rc && meta_get_u64(ix, "version", &v) == KZ_OK && v != SCHEMA_VERSION) {
			kz_warn("index %s: schema version %llu, this node writes %d: rebuilding it from the log",
				cfg->path, (unsigned long long)v, SCHEMA_VERSION);
			rc = exec(ix, DROP_ALL, why, why_len);
		}
		if (!rc)
			rc = exec(ix, SCHEMA, why, why_len);
		if (!rc && meta_set(ix, "version", SCHEMA_VERSION, NULL))
			rc = kz_index_sql_fail(ix, "meta", why, why_len);
		if (!rc && (sqlite3_prepare_v2(ix->db,
				"INSERT OR REPLACE INTO rec(seq, seg, off, bytes, time_ns, id, topic, origin,"
				" label, ctype, rule, retain) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
				-1, &ix->ins, NULL) != SQLITE_OK ||
			    sqlite3_prepare_v2(ix->db, "INSERT OR REPLACE INTO retained(topic, seq) VALUES(?, ?)",
				-1, &ix->ret_set, NULL) != SQLITE_OK ||
			    sqlite3_prepare_v2(ix->db, "DELETE FROM retained WHERE topic = ?", -1, &ix->ret_del,
				NULL) != SQLITE_OK ||
			    sqlite3_prepare_v2(ix->db, "SELECT id FROM topic WHERE name = ?1", -1, &ix->topics.sel, NULL) ||
			    sqlite3_prepare_v2(ix->db, "INSERT INTO topic(name) VALUES(?1)", -1, &ix->topics.ins, NULL) ||
			    sqlite3_prepare_v2(ix->db, "SELECT id FROM origin WHERE node = ?1 AND ident = ?2", -1,
					       &ix->origins.sel, NULL) ||
			    sqlite3_prepare_v2(ix->db, "INSERT INTO origin(node, ident) VALUES(?1, ?2)", -1,
					       &ix->origins.ins, NULL) ||
			    sqlite3_prepare_v2(ix->db, "SELECT id FROM ctype WHERE name = ?1", -1, &ix->ctypes.sel, NULL) ||
			    sqlite3_prepare_v2(ix->db, "INSERT INTO ctype(name) VALUES(?1)", -1, &ix->ctypes.ins, NULL)))
			rc = kz_index_sql_fail(ix, "prepare", why, why_len);
	}
	if (!rc)
		load_position(ix);
	uint64_t base;
	if (!rc && !cfg->read_only && meta_get_u64(ix, "rewriting", &base) == KZ_OK) {
		kz_warn("index: finishing the retention rewrite of segment %020" PRIu64 ".seg", base);
		rc = finish_rewrite(ix, base, why, why_len);
	}
	if (!rc && !cfg->read_only) {
		char *fp = rules_fingerprint(ix);
		sqlite3_stmt *st = NULL;
		int same = 0;
		if (fp && sqlite3_prepare_v2(ix->db, "SELECT v = ? FROM meta WHERE k='rules'", -1, &st, NULL) == SQLITE_OK) {
			sqlite3_bind_text(st, 1, fp, -1, SQLITE_STATIC);
			same = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0);
		}
		sqlite3_finalize(st);
		if (!fp)
			rc = KZ_ENOMEM;
		else if (!same && (exec(ix, "BEGIN; UPDATE rec SET rule = (SELECT kz_rule(name) FROM topic "
					    "WHERE topic.id = rec.topic);", why, why_len) ||
				   meta_set(ix, "rules", 0, fp) || exec(ix, "COMMIT", why, why_len))) {
			(void)sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
			rc = KZ_EIO;
		}
		free(fp);
	}
	if (rc) {
		int ec = ix->db ? sqlite3_errcode(ix->db) : SQLITE_OK;
		if (ec == SQLITE_CORRUPT || ec == SQLITE_NOTADB) /* derived data: the caller rebuilds it */
			rc = KZ_EMALFORMED;
		kz_index_close(ix);
		return rc;
	}
	*out = ix;
	return KZ_OK;
}

void kz_index_close(struct kz_index *ix)
{
	if (!ix)
		return;
	sqlite3_finalize(ix->ins);
	sqlite3_finalize(ix->ret_set);
	sqlite3_finalize(ix->ret_del);
	intern_free(&ix->topics);
	intern_free(&ix->origins);
	intern_free(&ix->ctypes);
	if (ix->db)
		sqlite3_close(ix->db);
	kz_reclog_reader_close(&ix->rd);
	kz_buf_cleanup(&ix->buf);
	free(ix->rules);
	free(ix->log_dir);
	free(ix);
}

/* ---------- retention ---------- */

struct dead_set {
	uint64_t *seq;
	size_t n, cap;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool keep_alive(void *ctx, uint64_t seq, const uint8_t *body, size_t n)
{
	(void)body;
	(void)n;
	const struct dead_set *d = ctx;
	return !bsearch(&seq, d->seq, d->n, sizeof *d->seq, cmp_u64);
}

/* Runs sql (binding ?1 = rule, ?2 = parameter, ?3 = first seq of the open segment) to add
 * seqs to the dead table. */
static int mark(struct kz_index *ix, const char *sql, int rule, int64_t param, uint64_t open_base,
		char *why, size_t why_len)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL) != SQLITE_OK)
		return kz_index_sql_fail(ix, "prepare", why, why_len);
	sqlite3_bind_int(st, 1, rule);
	sqlite3_bind_int64(st, 2, param);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)open_base);
	int rc = sqlite3_step(st) == SQLITE_DONE ? KZ_OK : KZ_EIO;
	sqlite3_finalize(st);
	return rc ? kz_index_sql_fail(ix, "retention", why, why_len) : KZ_OK;
}

static int seg_stats(struct kz_index *ix, const char *sql, uint64_t a, uint64_t b, uint64_t *count,
		     uint64_t *bytes)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL) != SQLITE_OK)
		return KZ_EIO;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)a);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)b);
	int rc = sqlite3_step(st) == SQLITE_ROW ? KZ_OK : KZ_EIO;
	*count = (uint64_t)sqlite3_column_int64(st, 0);
	*bytes = (uint64_t)sqlite3_column_int64(st, 1);
	sqlite3_finalize(st);
	return rc;
}

static int load_dead(struct kz_index *ix, uint64_t a, uint64_t b, struct dead_set *d)
{
	sqlite3_stmt *st;
	d->n = 0;
	if (sqlite3_prepare_v2(ix->db, "SELECT seq FROM dead WHERE seq >= ? AND seq < ? ORDER BY seq", -1, &st,
			       NULL) != SQLITE_OK)
		return KZ_EIO;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)a);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)b);
	int rc = KZ_OK;
	while (!rc && sqlite3_step(st) == SQLITE_ROW) {
		if (d->n == d->cap) {
			size_t nc;
			uint64_t *nv = kz_array_grow(d->seq, sizeof *nv, d->cap, (size_t)d->cap + 1, 1024, SIZE_MAX, &nc);
			if (!nv) {
				rc = KZ_ENOMEM;
				break;
			}
			d->seq = nv;
			d->cap = nc;
		}
		d->seq[d->n++] = (uint64_t)sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	return rc;
}

int kz_index_retention(struct kz_index *ix, uint64_t now_ns, struct kz_retention_report *rep, char *why,
		       size_t why_len)
{
	memset(rep, 0, sizeof *rep);
	if (ix->read_only || ix->n_rules == 0)
		return KZ_OK;
	uint64_t *bases;
	size_t nseg;
	if (kz_reclog_segments(ix->log_dir, &bases, &nseg)) {
		snprintf(why, why_len, "cannot list %s", ix->log_dir);
		return KZ_EIO;
	}
	if (nseg < 2) { /* only the segment being written */
		free(bases);
		return KZ_OK;
	}
	uint64_t open_base = bases[nseg - 1];
	int rc = exec(ix, "CREATE TEMP TABLE IF NOT EXISTS dead(seq INTEGER PRIMARY KEY); DELETE FROM dead;"
			  "BEGIN", why, why_len);
	for (size_t i = 0; i < ix->n_rules && !rc; i++) {
		const struct kz_retention_rule *r = &ix->rules[i];
		if (r->max_age_ns && now_ns > r->max_age_ns)
			rc = mark(ix, "INSERT OR IGNORE INTO dead SELECT seq FROM rec WHERE time_ns < ?2 AND rule = ?1 "
				      "AND seq < ?3", (int)i, (int64_t)(now_ns - r->max_age_ns), open_base, why, why_len);
		if (!rc && r->keep_last)
			rc = mark(ix, "INSERT OR IGNORE INTO dead SELECT seq FROM (SELECT seq, row_number() OVER "
				      "(PARTITION BY topic ORDER BY seq DESC) AS n FROM rec WHERE rule = ?1) "
				      "WHERE n > ?2 AND seq < ?3", (int)i,
				  r->keep_last > INT64_MAX ? INT64_MAX : (int64_t)r->keep_last, open_base, why, why_len);
		if (!rc && r->max_bytes)
			rc = mark(ix, "INSERT OR IGNORE INTO dead SELECT seq FROM (SELECT seq, sum(bytes) OVER "
				      "(ORDER BY seq DESC) AS total FROM rec WHERE rule = ?1) "
				      "WHERE total > ?2 AND seq < ?3", (int)i,
				  r->max_bytes > INT64_MAX ? INT64_MAX : (int64_t)r->max_bytes, open_base, why, why_len);
	}
	/* Each topic's retained message stays: it is the topic's state, not its history. */
	if (!rc)
		rc = exec(ix, "DELETE FROM dead WHERE seq IN (SELECT seq FROM retained); COMMIT", why, why_len);
	if (rc)
		(void)sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
	struct dead_set d = { 0 };
	for (size_t i = 0; i + 1 < nseg && !rc; i++) {
		uint64_t a = bases[i], b = bases[i + 1], dn, db, tn, tb;
		if (b - 1 > ix->through)
			break; /* not wholly indexed yet */
		if (seg_stats(ix, "SELECT count(*), coalesce(sum(r.bytes), 0) FROM dead d JOIN rec r "
				  "ON r.seq = d.seq WHERE d.seq >= ? AND d.seq < ?", a, b, &dn, &db) ||
		    seg_stats(ix, "SELECT count(*), coalesce(sum(bytes), 0) FROM rec WHERE seq >= ? AND seq < ?",
			      a, b, &tn, &tb)) {
			rc = kz_index_sql_fail(ix, "retention", why, why_len);
			break;
		}
		/* Rewrite when at least a quarter of the segment goes: each byte is rewritten a
		 * bounded number of times. */
		if (dn == 0 || (dn < tn && db * 4 < tb))
			continue;
		if ((rc = load_dead(ix, a, b, &d)) != KZ_OK)
			break;
		if (meta_set(ix, "rewriting", a, NULL)) {
			rc = kz_index_sql_fail(ix, "meta", why, why_len);
			break;
		}
		uint64_t kept;
		if ((rc = kz_reclog_rewrite(ix->log_dir, a, ix->max_record_bytes, keep_alive, &d, &kept, why,
					 why_len)) != KZ_OK) {
			(void)meta_del(ix, "rewriting"); /* nothing changed on disk */
			break;
		}
		if ((rc = finish_rewrite(ix, a, why, why_len)) != KZ_OK)
			break;
		rep->records_dropped += dn;
		rep->bytes_dropped += db;
		if (kept)
			rep->segments_rewritten++;
		else
			rep->segments_deleted++;
	}
	free(d.seq);
	free(bases);
	return rc;
}
