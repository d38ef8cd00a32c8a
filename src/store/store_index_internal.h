/* store_index_internal.h — what the index's source files share (store_index.c: indexing,
 * retention, open/close; store_index_query.c: queries and lookups). Not for other modules:
 * they use store.h. */
#ifndef KZ_STORE_INDEX_INTERNAL_H
#define KZ_STORE_INDEX_INTERNAL_H

#include "store/store.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Topics, origins and content types repeat: rows refer to them by id (tables topic,
 * origin, ctype), and the writer keeps the ids it used last in memory. */
struct intern {
	sqlite3_stmt *sel, *ins;
	struct { uint64_t h; int64_t id; char *key; } *slot;
	uint32_t n;
};

struct kz_index {
	sqlite3 *db;
	char *log_dir;
	uint32_t max_record_bytes;
	struct kz_retention_rule *rules;
	size_t n_rules;
	bool read_only;
	sqlite3_stmt *ins, *ret_set, *ret_del;
	struct intern topics, origins, ctypes;
	uint64_t through;       /* last seq indexed */
	struct kz_reclog_pos pos;  /* its frame; off 0 = unknown */
	struct kz_reclog_reader rd;
	struct kz_buf buf;
};

/* Fills why with "index: <what>: <SQLite's message>"; returns KZ_EIO. */
int kz_index_sql_fail(struct kz_index *ix, const char *what, char *why, size_t why_len);

#endif
