/* task_json.c — a task as the JSON of its records and of the API (docs/TASKS.md "A task"),
 * and back (the records read at start). */
#include "services/task/task_service_internal.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_json.h"
#include "base/kz_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int key(struct kz_buf *b, const char *k)
{
	char tmp[40];
	int n = snprintf(tmp, sizeof tmp, ",\"%s\":", k);
	return kz_buf_append(b, tmp, (size_t)n);
}

static int put_str(struct kz_buf *b, const char *k, const char *v)
{
	return v ? key(b, k) || kz_json_put_str(b, v) : 0;
}

static int put_raw(struct kz_buf *b, const char *k, const char *v)
{
	return v ? key(b, k) || kz_buf_append(b, v, strlen(v)) : 0;
}

static int put_time(struct kz_buf *b, const char *k, uint64_t ns)
{
	if (!ns)
		return 0;
	char t[32];
	kz_time_format(ns, t);
	return put_str(b, k, t);
}

int task_to_json(const struct task *t, struct kz_buf *b)
{
	char num[32];
	int rc = kz_buf_append(b, "{\"id\":", 6) || kz_json_put_str(b, t->id) || put_str(b, "assignee", t->assignee) ||
		 put_str(b, "kind", t->kind) || put_raw(b, "parameters", t->params) ||
		 put_raw(b, "entities", t->entities) || put_str(b, "precedence", task_precedence_name(t->prec)) ||
		 put_time(b, "deadline", t->deadline_ns) || put_str(b, "state", task_state_name(t->state));
	snprintf(num, sizeof num, "%llu", (unsigned long long)t->version);
	rc = rc || put_raw(b, "version", num) || put_str(b, "tasker", t->tasker) || put_str(b, "label", t->label) ||
	     put_time(b, "created", t->created_ns) || put_time(b, "updated", t->updated_ns) ||
	     put_str(b, "by", task_party_name((enum task_party)t->by)) || put_str(b, "reason", t->reason) ||
	     put_raw(b, "result", t->result) || key(b, "history") || kz_buf_append(b, "[", 1);
	for (unsigned i = 0; !rc && i < t->n_hist; i++) {
		char tm[32], h[200];
		kz_time_format(t->hist[i].time_ns, tm);
		int n = snprintf(h, sizeof h, "%s{\"state\":\"%s\",\"version\":%llu,\"time\":\"%s\",\"by\":\"%s\"}",
				 i ? "," : "", task_state_name((enum task_state)t->hist[i].state),
				 (unsigned long long)t->hist[i].version, tm, task_party_name((enum task_party)t->hist[i].by));
		rc = kz_buf_append(b, h, (size_t)n);
	}
	return rc || kz_buf_append(b, "]}", 2) ? KZ_ENOMEM : KZ_OK;
}

void task_free_fields(struct task *t)
{
	free(t->assignee);
	free(t->tasker);
	free(t->label);
	free(t->params);
	free(t->entities);
	free(t->reason);
	free(t->result);
	t->assignee = t->tasker = t->label = t->params = t->entities = t->reason = t->result = NULL;
}

static char *span(const char *p, const struct kz_json *v)
{
	char *s = malloc(v->end - v->off + 1);
	if (s) {
		memcpy(s, p + v->off, v->end - v->off);
		s[v->end - v->off] = 0;
	}
	return s;
}

static bool get_time(const struct kz_json *o, const char *k, uint64_t *ns)
{
	const char *s = kz_json_get_str(o, k);
	*ns = 0;
	return !s || !kz_time_parse(s, ns);
}

static int party_parse(const char *s)
{
	return !s ? 0 : !strcmp(s, "tasker") ? TASK_BY_TASKER : !strcmp(s, "agent") ? TASK_BY_AGENT
					       : !strcmp(s, "node")  ? TASK_BY_NODE : 0;
}

int task_from_json(struct kz_json_doc *d, const char *p, size_t n, struct task *t)
{
	memset(t, 0, sizeof *t);
	if (kz_json_parse(d, p, n))
		return -1;
	const struct kz_json *o = kz_json_root(d), *v;
	const char *id = kz_json_get_str(o, "id"), *kind = kz_json_get_str(o, "kind"),
		   *state = kz_json_get_str(o, "state"), *prec = kz_json_get_str(o, "precedence");
	long long ver;
	if (!kz_json_is(o, KZ_JSON_OBJECT) || !id || strlen(id) > TASK_ID_MAX || !kind || strlen(kind) > TASK_KIND_MAX ||
	    !state || task_state_parse(state, &t->state) || !prec || task_precedence_parse(prec, &t->prec) ||
	    !kz_json_int(kz_json_get(o, "version"), &ver) || ver < 1 || !kz_json_get_str(o, "assignee") ||
	    !kz_json_get_str(o, "tasker"))
		return -1;
	snprintf(t->id, sizeof t->id, "%s", id);
	snprintf(t->kind, sizeof t->kind, "%s", kind);
	t->version = (uint64_t)ver;
	t->by = (uint8_t)party_parse(kz_json_get_str(o, "by"));
	if (!get_time(o, "deadline", &t->deadline_ns) || !get_time(o, "created", &t->created_ns) ||
	    !get_time(o, "updated", &t->updated_ns))
		return -1;
	t->assignee = strdup(kz_json_get_str(o, "assignee"));
	t->tasker = strdup(kz_json_get_str(o, "tasker"));
	t->label = strdup(kz_json_get_str(o, "label") ? kz_json_get_str(o, "label") : "");
	if ((v = kz_json_get(o, "parameters")) && kz_json_is(v, KZ_JSON_OBJECT))
		t->params = span(p, v);
	if ((v = kz_json_get(o, "entities")) && kz_json_is(v, KZ_JSON_ARRAY))
		t->entities = span(p, v);
	if ((v = kz_json_get(o, "result")) && kz_json_is(v, KZ_JSON_OBJECT))
		t->result = span(p, v);
	if (kz_json_get_str(o, "reason"))
		t->reason = strdup(kz_json_get_str(o, "reason"));
	if ((v = kz_json_get(o, "history")) && kz_json_is(v, KZ_JSON_ARRAY))
		KZ_JSON_FOR(h, v) {
			enum task_state hs;
			long long hv;
			uint64_t ht;
			const char *st = kz_json_get_str(h, "state");
			if (t->n_hist == TASK_HIST_MAX || !st || task_state_parse(st, &hs) ||
			    !kz_json_int(kz_json_get(h, "version"), &hv) || !get_time(h, "time", &ht))
				break;
			t->hist[t->n_hist++] = (struct task_hist){ (uint8_t)hs,
								   (uint8_t)party_parse(kz_json_get_str(h, "by")),
								   (uint64_t)hv, ht };
		}
	if (!t->assignee || !t->tasker || !t->label) {
		task_free_fields(t);
		return -1;
	}
	return 0;
}
