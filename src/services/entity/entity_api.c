/* entity_api.c — GET /api/v1/entities and /api/v1/entities/<id or alias> (docs/ENTITIES.md
 * "Reading the picture"). Every entity passes the decision point before it is shown or
 * counted: the reader may subscribe to its topic (kz/entity/<id>) and dominates its label.
 * One the reader may not see is absent: a 404 for it reads like one for an unknown id. */
#include "services/entity/entity_service_internal.h"
#include "services/entity/entity_view.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_time.h"
#include "http/http.h"
#include "trust/policy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "/api/v1/entities"
#define STREAM_PATH "/api/v1/stream/entities"

/* ---------- the handlers ---------- */

struct collect {
	const struct entity_filter *f;
	struct entity_reader *rd;
	const struct entity **v;
	size_t n, cap;
	bool oom;
};

static int collect_one(void *ctx, const struct entity *e)
{
	struct collect *c = ctx;
	if (!entity_filter_matches(c->f, e) || !entity_reader_sees(c->rd, e))
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		const struct entity **v = realloc(c->v, cap * sizeof *v);
		if (!v) {
			c->oom = true;
			return 1;
		}
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = e;
	return 0;
}

static int by_seq(const void *a, const void *b)
{
	uint64_t x = (*(const struct entity *const *)a)->seq, y = (*(const struct entity *const *)b)->seq;
	return x < y ? -1 : x > y;
}

static void reader_init(struct entity_service *s, struct kz_http_req *r, struct entity_reader *rd)
{
	const struct entity_service_config *cfg = entity_service_config(s);
	entity_reader_init(rd, cfg->policy ? atomic_load(cfg->policy) : NULL, r->identity);
}

static void answer(struct kz_http_req *r, struct kz_buf *b)
{
	if (!b->len)
		kz_http_error(r, 500, NULL, "Out of memory", "the answer could not be built");
	else
		kz_http_send(r, 200, "application/json", (const char *)kz_buf_head(b), b->len);
}

static void list(struct entity_service *s, struct kz_http_req *r)
{
	const struct entity_service_config *cfg = entity_service_config(s);
	struct entity_filter f;
	entity_filter_init(&f, cfg->max_page);
	const char *qwhy = NULL;
	if (kz_http_query_each(r->query, strlen(r->query), entity_filter_param, &f, &qwhy)) {
		kz_http_error(r, 400, NULL, "Bad request", "%s", qwhy ? qwhy : f.why);
		return;
	}
	if (!f.has_limit)
		f.limit = cfg->default_page < f.limit ? cfg->default_page : f.limit;
	struct entity_reader rd;
	reader_init(s, r, &rd);
	struct collect c = { .f = &f, .rd = &rd };
	struct kz_buf b;
	kz_buf_init(&b, 0);
	entity_service_lock(s, true);
	entity_table_each(entity_service_table(s), collect_one, &c);
	if (!c.oom) {
		if (c.n)
			qsort(c.v, c.n, sizeof *c.v, by_seq);
		size_t n = c.n < f.limit ? c.n : f.limit;
		int rc = kz_buf_append(&b, "{\"entities\":[", 13);
		for (size_t i = 0; !rc && i < n; i++)
			rc = (i && kz_buf_append(&b, ",", 1)) ||
			     entity_to_json_hiding(c.v[i], entity_reader_hides(&rd, c.v[i]), &b);
		char tail[96];
		int tn = snprintf(tail, sizeof tail, "],\"more\":%s,\"next\":\"%llu\"}", c.n > n ? "true" : "false",
				  (unsigned long long)(n ? c.v[n - 1]->seq : f.after_seq));
		if (rc || kz_buf_append(&b, tail, (size_t)tn))
			kz_buf_reset(&b);
	}
	entity_service_lock(s, false);
	free(c.v);
	static _Thread_local char reason[96];
	snprintf(reason, sizeof reason, "%zu entities returned, %llu withheld", c.n < f.limit ? c.n : f.limit,
		 (unsigned long long)rd.withheld);
	r->audit_reason = reason;
	answer(r, &b);
	kz_buf_cleanup(&b);
}

static void one(struct entity_service *s, struct kz_http_req *r, const char *name)
{
	struct entity_reader rd;
	reader_init(s, r, &rd);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	entity_service_lock(s, true);
	struct entity *e = entity_table_find(entity_service_table(s), name);
	bool shown = e && entity_reader_sees(&rd, e) && entity_reader_sees_name(&rd, e, name);
	if (shown && entity_to_json_hiding(e, entity_reader_hides(&rd, e), &b))
		kz_buf_reset(&b);
	entity_service_lock(s, false);
	if (!shown) /* unknown, or not for this reader: the same answer */
		kz_http_error(r, 404, NULL, "Not found", "no entity %.128s", name);
	else
		answer(r, &b);
	kz_buf_cleanup(&b);
}

static void handle(void *ctx, struct kz_http_req *r)
{
	struct entity_service *s = ctx;
	if (strcmp(r->method, "GET")) {
		kz_http_header(r, "Allow", "GET");
		kz_http_error(r, 405, NULL, "Method not allowed", "entities are read here; they are written as records "
			      "on kz/entity/<id> (MQTT)");
		return;
	}
	const char *rest = r->path + strlen(PREFIX);
	if (!*rest || !strcmp(rest, "/")) {
		list(s, r);
		return;
	}
	rest++;
	const char *slash = strchr(rest, '/');
	size_t len = slash ? (size_t)(slash - rest) : strlen(rest);
	if (!entity_id_valid(rest, len) || (slash && strcmp(slash, "/history"))) {
		kz_http_error(r, 404, NULL, "Not found", "no entity %.128s (paths: /api/v1/entities, /api/v1/entities/<id>, "
			      "/api/v1/entities/<id>/history)", rest);
		return;
	}
	char name[ENTITY_ID_MAX + 1];
	memcpy(name, rest, len);
	name[len] = 0;
	if (slash)
		entity_history_get(s, r, name);
	else
		one(s, r, name);
}

static void handle_stream(void *ctx, struct kz_http_req *r)
{
	if (strcmp(r->method, "GET")) {
		kz_http_header(r, "Allow", "GET");
		kz_http_error(r, 405, NULL, "Method not allowed", "the entity stream is read with GET");
		return;
	}
	if (strcmp(r->path, STREAM_PATH)) {
		kz_http_error(r, 404, NULL, "Not found", "no resource at %.200s", r->path);
		return;
	}
	entity_stream_get(ctx, r);
}

int entity_service_routes(struct entity_service *s, struct kz_http *h)
{
	return kz_http_route(h, PREFIX, true, handle, s) || kz_http_route(h, STREAM_PATH, true, handle_stream, s);
}
