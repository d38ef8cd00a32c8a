/* entity_history.c — GET /api/v1/entities/<id or alias>/history (docs/ENTITIES.md
 * "Reading the picture"): the updates of an entity as the log has them, between two times,
 * from the node's record index (read only). The records of the entity's id and of each of
 * its aliases (updates that found it through an alias came on those topics), in log order.
 * Each record passes the decision point (subscribe to its topic, dominate its label); one
 * the reader may not see is left out, and when none is left the answer is the 404 of an
 * unknown entity. Older updates that did not change the state are there too: history is
 * what was said, not only what was applied. */
#include "services/entity/entity_service.h"
#include "services/entity/entity_view.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_time.h"
#include "http/http.h"
#include "store/store.h"
#include "trust/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hist_params {
	uint64_t since_ns, until_ns;
	uint32_t limit;
	char why[160];
};

static int hist_param(void *ctx, const char *k, const char *v)
{
	struct hist_params *h = ctx;
	if (!strcmp(k, "since") || !strcmp(k, "until")) {
		if (kz_time_parse(v, k[0] == 's' ? &h->since_ns : &h->until_ns)) {
			snprintf(h->why, sizeof h->why, "%s: an RFC 3339 date-time", k);
			return -1;
		}
	} else if (!strcmp(k, "limit")) {
		char *end;
		unsigned long long x = strtoull(v, &end, 10);
		if (!*v || *end || x == 0 || v[0] == '-') {
			snprintf(h->why, sizeof h->why, "limit: a positive integer");
			return -1;
		}
		if (x < h->limit)
			h->limit = (uint32_t)x;
	} else {
		snprintf(h->why, sizeof h->why, "unknown parameter %.40s (since, until, limit)", k);
		return -1;
	}
	return 0;
}

/* One update of the history, kept until all topics are read (then sorted by sequence). */
struct hist_row {
	uint64_t seq;
	char *json; /* the row's JSON object */
};

struct hist {
	const struct kz_policy *pol;
	struct kz_subject s;
	struct hist_row *v;
	size_t n, cap;
	uint32_t limit;
	uint64_t withheld;
	bool oom;
};

static bool row_visible(struct hist *h, const struct kz_record *r)
{
	if (!h->pol)
		return true;
	const char *w;
	if (!kz_policy_subscribe(h->pol, &h->s, (const char *)r->topic.p, r->topic.len, &w))
		return false;
	if (!r->label.len)
		return true;
	struct kz_label l;
	char canon[KZ_LABEL_MAX_LEN + 1], why[200];
	size_t clen;
	return kz_label_parse(h->pol, (const char *)r->label.p, r->label.len, &l, canon, &clen, why, sizeof why) == 0 &&
	       kz_dominates(h->pol, &h->s, &l, &w);
}

static int quoted(struct kz_buf *b, const char *key, const uint8_t *p, size_t n)
{
	/* record fields are identities, labels, node ids, topics: no quotes or controls in them,
	 * but a byte that would need escaping is replaced rather than trusted */
	char k[32];
	int kn = snprintf(k, sizeof k, ",\"%s\":\"", key);
	if (kz_buf_append(b, k, (size_t)kn))
		return -1;
	for (size_t i = 0; i < n; i++) {
		char ch = (char)p[i];
		if (ch == '"' || ch == '\\' || (unsigned char)ch < 0x20)
			ch = '?';
		if (kz_buf_append(b, &ch, 1))
			return -1;
	}
	return kz_buf_append(b, "\"", 1);
}

static int hist_row(void *ctx, uint64_t seq, const struct kz_record *r)
{
	struct hist *h = ctx;
	if (!row_visible(h, r)) {
		h->withheld++;
		return 0;
	}
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct hist_row *v = realloc(h->v, cap * sizeof *v);
		if (!v) {
			h->oom = true;
			return 1;
		}
		h->v = v;
		h->cap = cap;
	}
	struct kz_buf b;
	kz_buf_init(&b, 0);
	char t[32], head[96];
	kz_time_format(r->time_ns, t);
	int hn = snprintf(head, sizeof head, "{\"seq\":%llu,\"received_time\":\"%s\"", (unsigned long long)seq, t);
	/* the payload passed entity_decode when it was published (or is skipped by the service:
	 * shown as it is only when it is a JSON object, as the publish check guarantees) */
	bool object = r->payload.len >= 2 && r->payload.p[0] == '{';
	if (kz_buf_append(&b, head, (size_t)hn) || quoted(&b, "topic", r->topic.p, r->topic.len) ||
	    quoted(&b, "origin", r->origin_id.p, r->origin_id.len) ||
	    quoted(&b, "node", r->origin_node.p, r->origin_node.len) || quoted(&b, "label", r->label.p, r->label.len) ||
	    (object && (kz_buf_append(&b, ",\"update\":", 10) || kz_buf_append(&b, r->payload.p, r->payload.len))) ||
	    kz_buf_append(&b, "}", 1) || kz_buf_append(&b, "", 1)) {
		kz_buf_cleanup(&b);
		h->oom = true;
		return 1;
	}
	h->v[h->n++] = (struct hist_row){ seq, (char *)kz_buf_head(&b) }; /* off is 0: the block itself */
	return 0;
}

static int by_seq(const void *a, const void *b)
{
	uint64_t x = ((const struct hist_row *)a)->seq, y = ((const struct hist_row *)b)->seq;
	return x < y ? -1 : x > y;
}

/* The names whose topics hold this entity's updates: its id and aliases (copied under the
 * table's lock), or the name asked for when the table has no such entity any more, or when
 * the name is an alias the reader may not see (docs/ENTITIES.md "Field labels"). */
static size_t names_of(struct entity_service *s, struct entity_reader *rd, const char *name,
		       char names[][ENTITY_ID_MAX + 1])
{
	size_t n = 0;
	entity_service_lock(s, true);
	const struct entity *e = entity_table_find(entity_service_table(s), name);
	if (e && entity_reader_sees_name(rd, e, name)) {
		snprintf(names[n++], ENTITY_ID_MAX + 1, "%s", e->id);
		for (unsigned i = 0; i < e->n_aliases; i++)
			snprintf(names[n++], ENTITY_ID_MAX + 1, "%s", e->aliases[i]);
	} else {
		snprintf(names[n++], ENTITY_ID_MAX + 1, "%s", name);
	}
	entity_service_lock(s, false);
	return n;
}

static void hist_free(struct hist *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->v[i].json);
	free(h->v);
}

void entity_history_get(struct entity_service *s, struct kz_http_req *r, const char *name)
{
	const struct entity_service_config *cfg = entity_service_config(s);
	struct hist_params p = { .limit = cfg->max_page };
	const char *qwhy = NULL;
	if (kz_http_query_each(r->query, strlen(r->query), hist_param, &p, &qwhy)) {
		kz_http_error(r, 400, NULL, "Bad request", "%s", qwhy ? qwhy : p.why);
		return;
	}
	struct hist h = { .limit = p.limit };
	h.pol = cfg->policy ? atomic_load(cfg->policy) : NULL;
	if (h.pol)
		kz_subject_init(h.pol, r->identity, &h.s);
	char names[1 + ENTITY_MAX_ALIASES][ENTITY_ID_MAX + 1];
	struct entity_reader rd;
	entity_reader_init(&rd, h.pol, r->identity);
	size_t nn = names_of(s, &rd, name, names);
	char why[300] = "";
	int rc = 0;
	entity_service_index_lock(s, true);
	struct kz_index *ix = entity_service_index(s, why, sizeof why);
	for (size_t i = 0; ix && !rc && !h.oom && i < nn; i++) {
		char topic[16 + ENTITY_ID_MAX + 1];
		snprintf(topic, sizeof topic, "kz/entity/%.*s", ENTITY_ID_MAX, names[i]);
		struct kz_query q = { .filter = topic, .since_ns = p.since_ns, .until_ns = p.until_ns, .limit = p.limit + 1u };
		rc = kz_index_query(ix, &q, hist_row, &h, why, sizeof why);
	}
	entity_service_index_lock(s, false);
	if (!ix || rc || h.oom) {
		hist_free(&h);
		kz_http_error(r, 503, NULL, "History unavailable", "%s", h.oom ? "out of memory" : why);
		return;
	}
	if (!h.n) { /* unknown, or nothing this reader may see: the same answer */
		kz_http_error(r, 404, NULL, "Not found", "no entity %.128s", name);
		return;
	}
	qsort(h.v, h.n, sizeof *h.v, by_seq);
	size_t shown = h.n < h.limit ? h.n : h.limit;
	struct kz_buf b;
	kz_buf_init(&b, 0);
	int bad = kz_buf_append(&b, "{\"history\":[", 12);
	for (size_t i = 0; !bad && i < shown; i++)
		bad = (i && kz_buf_append(&b, ",", 1)) || kz_buf_append(&b, h.v[i].json, strlen(h.v[i].json));
	char tail[48];
	int tn = snprintf(tail, sizeof tail, "],\"more\":%s}", h.n > shown ? "true" : "false");
	bad = bad || kz_buf_append(&b, tail, (size_t)tn);
	static _Thread_local char reason[96];
	snprintf(reason, sizeof reason, "%zu updates returned, %llu withheld", shown, (unsigned long long)h.withheld);
	r->audit_reason = reason;
	if (bad)
		kz_http_error(r, 500, NULL, "Out of memory", "the answer could not be built");
	else
		kz_http_send(r, 200, "application/json", (const char *)kz_buf_head(&b), b.len);
	kz_buf_cleanup(&b);
	hist_free(&h);
}
