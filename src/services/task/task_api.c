/* task_api.c — the tasks' HTTPS API (docs/TASKS.md "HTTPS"):
 *   POST /api/v1/tasks                      create (201 once its record is durable)
 *   GET  /api/v1/tasks[?state=&assignee=&tasker=&open=1&limit=]
 *   GET  /api/v1/tasks/<id>
 *   POST /api/v1/tasks/<id>/state           a transition (200 once durable)
 *   GET  /api/v1/agents                     agents and the kinds they registered
 *   PUT  /api/v1/agents/me/kinds            register the caller's kinds
 *   GET  /api/v1/agents/me/tasks            the caller's open tasks
 * A task the caller may not see (docs/TASKS.md "Who sees a task") answers like an unknown
 * one. Errors are JSON bodies {"title", "description", "http_status"}. */
#include "services/task/task_service_internal.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "http/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASKS "/api/v1/tasks"
#define AGENTS "/api/v1/agents"

static const char *title_of(int st)
{
	return st == 400 ? "Bad request" : st == 403 ? "Forbidden" : st == 404 ? "Not found" : st == 405
	       ? "Method not allowed" : st == 409 ? "Conflict" : st == 503 ? "Service unavailable" : "Error";
}

static void send_buf(struct kz_http_req *r, int status, struct kz_buf *b)
{
	if (!b->len)
		kz_http_error(r, 500, NULL, "Out of memory", "the answer could not be built");
	else
		kz_http_send(r, status, "application/json", (const char *)kz_buf_head(b), b->len);
}

static void resumed(void *ctx, struct kz_http_req *r)
{
	struct task_done *d = ctx;
	if (r) {
		if (d->status == 503 || !d->body)
			kz_http_error(r, 503, NULL, title_of(503), "the task's record could not be stored; nothing changed on disk");
		else
			kz_http_send(r, d->status, "application/json", d->body, d->body_len);
	}
	free(d->body);
	free(d);
}

void task_api_answer(struct task_done *d)
{
	kz_http_resume(d->http, resumed, d);
}

/* The caller's answer waits for d's record: the task's JSON now, sent once it is durable. */
static void wait_for(struct task_service *s, struct kz_http_req *r, struct task_done *d, struct task *t, int status)
{
	struct kz_buf b;
	kz_buf_init(&b, 0);
	if (task_to_json(t, &b) == KZ_OK && (d->body = malloc(b.len))) {
		memcpy(d->body, kz_buf_head(&b), b.len);
		d->body_len = b.len;
	}
	kz_buf_cleanup(&b);
	d->status = status;
	d->http = kz_http_defer(r);
	task_submit(s, d);
}

static void refused(struct kz_http_req *r, int st, const char *why)
{
	r->audit_reason = why;
	kz_http_error(r, st, NULL, title_of(st), "%s", why);
}

static void create(struct task_service *s, struct kz_http_req *r)
{
	const char *label = kz_http_req_header(r, "kz-label"), *why = NULL;
	char whybuf[700];
	struct task *t;
	struct task_done *d = NULL;
	pthread_mutex_lock(&s->lock);
	int st = task_create(s, r->identity, r->body, r->body_len, NULL, label, &t, &d, &why, whybuf, sizeof whybuf);
	if (st == TS_CREATED) {
		char loc[TASK_ID_MAX + 32];
		snprintf(loc, sizeof loc, TASKS "/%s", t->id);
		kz_http_header(r, "Location", loc);
		r->audit_label = NULL;
		wait_for(s, r, d, t, 201);
	}
	pthread_mutex_unlock(&s->lock);
	if (st != TS_CREATED)
		refused(r, st, why);
}

static void move(struct task_service *s, struct kz_http_req *r, const char *id)
{
	const char *why = NULL;
	char whybuf[700];
	struct task *t;
	struct task_done *d = NULL;
	pthread_mutex_lock(&s->lock);
	int st = task_move(s, r->identity, id, r->body, r->body_len, &t, &d, &why, whybuf, sizeof whybuf);
	if (st == TS_OK)
		wait_for(s, r, d, t, 200);
	pthread_mutex_unlock(&s->lock);
	if (st != TS_OK)
		refused(r, st, why);
}

struct list_q {
	unsigned state_mask;
	bool open_only;
	char assignee[512], tasker[512];
	uint32_t limit;
	char why[160];
};

static int list_param(void *ctx, const char *k, const char *v)
{
	struct list_q *q = ctx;
	if (!strcmp(k, "state")) {
		enum task_state st;
		char buf[256];
		snprintf(buf, sizeof buf, "%s", v);
		for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
			if (task_state_parse(tok, &st)) {
				snprintf(q->why, sizeof q->why, "state: '%s' is not a task state (CREATED, SENT, ...)", tok);
				return -1;
			}
			q->state_mask |= 1u << st;
		}
	} else if (!strcmp(k, "open")) {
		q->open_only = !strcmp(v, "1") || !strcmp(v, "true");
	} else if (!strcmp(k, "assignee") || !strcmp(k, "tasker")) {
		snprintf(!strcmp(k, "tasker") ? q->tasker : q->assignee, sizeof q->tasker, "%s", v);
	} else if (!strcmp(k, "limit")) {
		char *end;
		unsigned long l = strtoul(v, &end, 10);
		if (!*v || *end || l == 0 || l > q->limit) {
			snprintf(q->why, sizeof q->why, "limit: 1 to %u", q->limit);
			return -1;
		}
		q->limit = (uint32_t)l;
	} else {
		snprintf(q->why, sizeof q->why, "unknown parameter '%.40s' (state, open, assignee, tasker, limit)", k);
		return -1;
	}
	return 0;
}

static int by_created(const void *a, const void *b)
{
	const struct task *x = *(struct task *const *)a, *y = *(struct task *const *)b;
	return x->created_ns < y->created_ns ? -1 : x->created_ns > y->created_ns ? 1 : strcmp(x->id, y->id);
}

/* The tasks q selects that the caller sees, oldest first, as {"tasks": [...], "more": bool}. */
static void list(struct task_service *s, struct kz_http_req *r, struct list_q *q)
{
	const struct kz_policy *pol = task_policy(s);
	struct kz_subject rd;
	kz_subject_init(pol, r->identity, &rd);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	pthread_mutex_lock(&s->lock);
	struct task **v = malloc((s->count ? s->count : 1) * sizeof *v);
	size_t n = 0;
	for (size_t i = 0; v && i < s->n_bucket; i++)
		for (struct task *t = s->bucket[i]; t; t = t->next) {
			if ((q->state_mask && !(q->state_mask & (1u << t->state))) ||
			    (q->open_only && task_state_final(t->state)) || (q->assignee[0] && strcmp(q->assignee, t->assignee)) ||
			    (q->tasker[0] && strcmp(q->tasker, t->tasker)) || !task_visible(s, pol, &rd, t))
				continue;
			v[n++] = t;
		}
	if (v) {
		qsort(v, n, sizeof *v, by_created);
		size_t shown = n < q->limit ? n : q->limit;
		int rc = kz_buf_append(&b, "{\"tasks\":[", 10);
		for (size_t i = 0; !rc && i < shown; i++)
			rc = (i && kz_buf_append(&b, ",", 1)) || task_to_json(v[i], &b);
		const char *tail = n > shown ? "],\"more\":true}" : "],\"more\":false}";
		if (rc || kz_buf_append(&b, tail, strlen(tail)))
			kz_buf_reset(&b);
	}
	pthread_mutex_unlock(&s->lock);
	free(v);
	send_buf(r, 200, &b);
	kz_buf_cleanup(&b);
}

static void one(struct task_service *s, struct kz_http_req *r, const char *id)
{
	const struct kz_policy *pol = task_policy(s);
	struct kz_subject rd;
	kz_subject_init(pol, r->identity, &rd);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	pthread_mutex_lock(&s->lock);
	struct task *t = task_find(s, id);
	bool shown = t && task_visible(s, pol, &rd, t);
	if (shown && task_to_json(t, &b))
		kz_buf_reset(&b);
	pthread_mutex_unlock(&s->lock);
	if (!shown)
		kz_http_error(r, 404, NULL, "Not found", "no task '%s' (or not one this identity may see)", id);
	else
		send_buf(r, 200, &b);
	kz_buf_cleanup(&b);
}

static void tasks_handler(void *ctx, struct kz_http_req *r)
{
	struct task_service *s = ctx;
	const char *rest = r->path + strlen(TASKS);
	if (!r->identity) {
		kz_http_error(r, 403, NULL, "Forbidden", "tasks need a client certificate");
		return;
	}
	if (!*rest) {
		if (!strcmp(r->method, "POST"))
			create(s, r);
		else if (!strcmp(r->method, "GET")) {
			struct list_q q = { .limit = s->cfg.max_page };
			const char *qw = NULL;
			if (kz_http_query_each(r->query, strlen(r->query), list_param, &q, &qw))
				kz_http_error(r, 400, NULL, "Bad request", "%s", qw ? qw : q.why);
			else
				list(s, r, &q);
		} else
			kz_http_error(r, 405, NULL, title_of(405), "%s takes GET and POST", TASKS);
		return;
	}
	char id[TASK_ID_MAX + 1];
	const char *sl = strchr(rest + 1, '/');
	size_t idn = sl ? (size_t)(sl - rest - 1) : strlen(rest + 1);
	if (rest[0] != '/' || idn == 0 || idn > TASK_ID_MAX) {
		kz_http_error(r, 404, NULL, "Not found", "no such resource (" TASKS "/<id>[/state])");
		return;
	}
	memcpy(id, rest + 1, idn);
	id[idn] = 0;
	if (!sl) {
		if (strcmp(r->method, "GET"))
			kz_http_error(r, 405, NULL, title_of(405), TASKS "/<id> takes GET");
		else
			one(s, r, id);
	} else if (!strcmp(sl, "/state")) {
		if (strcmp(r->method, "POST"))
			kz_http_error(r, 405, NULL, title_of(405), TASKS "/<id>/state takes POST");
		else
			move(s, r, id);
	} else {
		kz_http_error(r, 404, NULL, "Not found", "no such resource (" TASKS "/<id>[/state])");
	}
}

static void agents_list(struct task_service *s, struct kz_http_req *r)
{
	struct kz_buf b;
	kz_buf_init(&b, 0);
	pthread_mutex_lock(&s->lock);
	int rc = kz_buf_append(&b, "{\"agents\":[", 11);
	for (struct task_agent *a = s->agents; !rc && a; a = a->next) {
		rc = (a != s->agents && kz_buf_append(&b, ",", 1)) || kz_buf_append(&b, "{\"id\":", 6) ||
		     kz_json_put_str(&b, a->id) || kz_buf_append(&b, ",\"kinds\":[", 10);
		for (unsigned i = 0; !rc && i < a->n; i++)
			rc = (i && kz_buf_append(&b, ",", 1)) || kz_json_put_str(&b, a->kinds[i]);
		rc = rc || kz_buf_append(&b, "]}", 2);
	}
	if (rc || kz_buf_append(&b, "]}", 2))
		kz_buf_reset(&b);
	pthread_mutex_unlock(&s->lock);
	send_buf(r, 200, &b);
	kz_buf_cleanup(&b);
}

static void agents_handler(void *ctx, struct kz_http_req *r)
{
	struct task_service *s = ctx;
	const char *rest = r->path + strlen(AGENTS);
	if (!r->identity) {
		kz_http_error(r, 403, NULL, "Forbidden", "agents need a client certificate");
		return;
	}
	if (!*rest && !strcmp(r->method, "GET")) {
		agents_list(s, r);
	} else if (!strcmp(rest, "/me/kinds") && !strcmp(r->method, "PUT")) {
		const char *why = NULL;
		if (strncmp(r->identity, "spiffe://", 9)) {
			refused(r, 403, "agents are identified by SPIFFE IDs");
			return;
		}
		pthread_mutex_lock(&s->lock);
		int st = task_kinds_set(s, r->identity, r->body, r->body_len, true, &why);
		pthread_mutex_unlock(&s->lock);
		if (st != TS_OK)
			refused(r, st, why);
		else
			kz_http_send(r, 200, "application/json", r->body, r->body_len);
	} else if (!strcmp(rest, "/me/tasks") && !strcmp(r->method, "GET")) {
		struct list_q q = { .limit = s->cfg.max_page, .open_only = true };
		snprintf(q.assignee, sizeof q.assignee, "%s", r->identity);
		list(s, r, &q);
	} else {
		kz_http_error(r, 404, NULL, "Not found",
			      "no such resource (GET " AGENTS ", PUT " AGENTS "/me/kinds, GET " AGENTS "/me/tasks)");
	}
}

int task_service_routes(struct task_service *s, struct kz_http *h)
{
	return kz_http_route(h, TASKS, true, tasks_handler, s) || kz_http_route(h, AGENTS, true, agents_handler, s);
}
