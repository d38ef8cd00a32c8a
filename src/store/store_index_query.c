/* store_index_query.c — queries on the index (topic filter, time range, origin, content
 * type), retained messages, and the lookups replay uses (by record id, by time). Rows name
 * where a record is; the record itself is read from the log. */
#include "store/store.h"
#include "store/store_index_internal.h"
#include "base/kz_err.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int emit_rows(struct kz_index *ix, sqlite3_stmt *st, kz_index_row_fn cb, void *ctx, char *why,
		     size_t why_len)
{
	int rc = KZ_OK, s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
		struct kz_reclog_pos pos = { (uint64_t)sqlite3_column_int64(st, 1),
					  (uint64_t)sqlite3_column_int64(st, 2) };
		rc = kz_reclog_read(&ix->rd, &pos, seq, &ix->buf);
		if (rc == KZ_ENOTFOUND) { /* dropped by retention after the query began */
			rc = KZ_OK;
			continue;
		}
		struct kz_record r;
		const char *what;
		if (!rc && kz_record_decode(kz_buf_head(&ix->buf), ix->buf.len, &r, &what)) {
			snprintf(why, why_len, "record %" PRIu64 ": %s", seq, what);
			rc = KZ_EIO;
		} else if (rc) {
			snprintf(why, why_len, "record %" PRIu64 " (segment %020" PRIu64 ".seg offset %" PRIu64
				 "): %s", seq, pos.seg, pos.off, kz_strerror(rc));
		}
		if (rc || (rc = cb(ctx, seq, &r)) != KZ_OK)
			break;
	}
	if (!rc && s != SQLITE_DONE)
		rc = kz_index_sql_fail(ix, "query", why, why_len);
	return rc;
}

int kz_index_query(struct kz_index *ix, const struct kz_query *q, kz_index_row_fn cb, void *ctx, char *why,
		   size_t why_len)
{
	char sql[1024] = "SELECT seq, seg, off FROM rec WHERE 1";
	size_t fl = q->filter ? strlen(q->filter) : 0;
	size_t lit = strcspn(q->filter ? q->filter : "", "+#");
	char lo[1024] = "", hi[1024] = "";
	if (q->filter && lit == fl) {
		strcat(sql, " AND topic = (SELECT id FROM topic WHERE name = :f)");
	} else if (q->filter) {
		/* The literal part before the first wildcard bounds an index range: "a/b/#" covers
		 * "a/b" (the parent level) and everything under it. */
		if (lit > 0 && q->filter[lit - 1] == '/')
			lit--;
		if (lit >= sizeof lo)
			lit = sizeof lo - 1;
		memcpy(lo, q->filter, lit);
		lo[lit] = 0;
		memcpy(hi, lo, lit + 1);
		strcat(sql, " AND topic IN (SELECT id FROM topic WHERE");
		if (lit) {
			hi[lit - 1]++; /* the byte 0xFF never occurs in UTF-8 */
			strcat(sql, " name >= :lo AND name < :hi AND");
		}
		strcat(sql, " kz_match(:f, name))");
	}
	if (q->since_ns)
		strcat(sql, " AND time_ns >= :since");
	if (q->until_ns)
		strcat(sql, " AND time_ns <= :until");
	if (q->origin)
		strcat(sql, " AND origin IN (SELECT id FROM origin WHERE ident = :origin)");
	if (q->origin_node)
		strcat(sql, " AND origin IN (SELECT id FROM origin WHERE node = :node)");
	if (q->content_type)
		strcat(sql, " AND ctype = (SELECT id FROM ctype WHERE name = :ctype)");
	if (q->after_seq)
		strcat(sql, " AND seq > :after");
	strcat(sql, " ORDER BY time_ns, seq");
	if (q->limit)
		strcat(sql, " LIMIT :limit");
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL) != SQLITE_OK)
		return kz_index_sql_fail(ix, "query", why, why_len);
#define BIND_TEXT(name, v) sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, name), v, -1, SQLITE_STATIC)
#define BIND_INT(name, v) sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, name), (sqlite3_int64)(v))
	if (q->filter)
		BIND_TEXT(":f", q->filter);
	BIND_TEXT(":lo", lo);
	BIND_TEXT(":hi", hi);
	BIND_INT(":since", q->since_ns > INT64_MAX ? INT64_MAX : q->since_ns);
	BIND_INT(":until", q->until_ns > INT64_MAX ? INT64_MAX : q->until_ns);
	BIND_TEXT(":origin", q->origin);
	BIND_TEXT(":node", q->origin_node);
	BIND_TEXT(":ctype", q->content_type);
	BIND_INT(":after", q->after_seq > INT64_MAX ? INT64_MAX : q->after_seq);
	BIND_INT(":limit", q->limit > INT64_MAX ? INT64_MAX : q->limit);
#undef BIND_TEXT
#undef BIND_INT
	int rc = emit_rows(ix, st, cb, ctx, why, why_len);
	sqlite3_finalize(st);
	return rc;
}

int kz_index_retained(struct kz_index *ix, kz_index_row_fn cb, void *ctx, char *why, size_t why_len)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ix->db, "SELECT r.seq, r.seg, r.off FROM retained t JOIN rec r ON r.seq = t.seq "
				       "ORDER BY r.seq", -1, &st, NULL) != SQLITE_OK)
		return kz_index_sql_fail(ix, "retained", why, why_len);
	int rc = emit_rows(ix, st, cb, ctx, why, why_len);
	sqlite3_finalize(st);
	return rc;
}

static uint64_t one_seq(struct kz_index *ix, const char *sql, int64_t a, int64_t b, const uint8_t *id)
{
	sqlite3_stmt *st;
	uint64_t seq = 0;
	if (sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(st, 1, a);
	sqlite3_bind_int64(st, 2, b);
	if (id)
		sqlite3_bind_blob(st, 3, id, 16, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		seq = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return seq;
}

uint64_t kz_index_find_id(struct kz_index *ix, const uint8_t id[16])
{
	/* A UUIDv7 starts with its Unix time in ms (RFC 9562 §5.7), the same clock reading
	 * as the record's accept time. */
	uint64_t ms = 0;
	for (int i = 0; i < 6; i++)
		ms = ms << 8 | id[i];
	if (ms > (uint64_t)INT64_MAX / 1000000u - 1)
		return 0;
	return one_seq(ix, "SELECT seq FROM rec WHERE time_ns >= ?1 AND time_ns < ?2 AND id = ?3",
		       (int64_t)(ms * 1000000u), (int64_t)((ms + 1) * 1000000u), id);
}

uint64_t kz_index_first_since(struct kz_index *ix, uint64_t time_ns)
{
	if (time_ns > INT64_MAX - 1000000000)
		return 0;
	/* Sequence numbers follow accept times up to the few ms a record takes from its worker
	 * to the store thread: the smallest seq within a second of time_ns is the first. */
	uint64_t seq = one_seq(ix, "SELECT min(seq) FROM rec WHERE time_ns >= ?1 AND time_ns < ?2",
			       (int64_t)time_ns, (int64_t)time_ns + 1000000000, NULL);
	if (!seq)
		seq = one_seq(ix, "SELECT seq FROM rec WHERE time_ns >= ?1 ORDER BY time_ns LIMIT ?2",
			      (int64_t)time_ns, 1, NULL);
	return seq;
}

uint64_t kz_index_first_at(struct kz_index *ix, uint64_t time_ns)
{
	if (time_ns > INT64_MAX)
		return 0;
	/* exact, unlike kz_index_first_since: followed records (a cluster) can be far older
	 * than their neighbours in the log */
	return one_seq(ix, "SELECT min(seq) FROM rec WHERE time_ns >= ?1", (int64_t)time_ns, 0, NULL);
}
