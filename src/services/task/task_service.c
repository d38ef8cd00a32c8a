/* task_service.c — tasks in memory, their changes and records (task_service.h has the
 * model). Lock order: the service's lock, then the store's (kz_store_submit); the store's
 * done callbacks take only the send queue's lock, never the service's. */
#include "services/task/task_service_internal.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "base/kz_topic.h"
#include "store/store.h"
#include "trust/audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC_TASK "kz/task/"
#define TOPIC_AGENT "kz/agent/"

/* Ids of tasks whose creation is durable, for the thread to send (the store's callbacks
 * must not take the service's lock). */
static pthread_mutex_t sendq_lock = PTHREAD_MUTEX_INITIALIZER;
struct sendq {
	char id[TASK_ID_MAX + 1];
	struct task_service *s;
	struct sendq *next;
};
static struct sendq *sendq_head;

const struct kz_policy *task_policy(struct task_service *s)
{
	return s->cfg.policy ? atomic_load(s->cfg.policy) : NULL;
}

int task_inbox_topic(const char *identity, char *out, size_t cap)
{
	if (strncmp(identity, "spiffe://", 9))
		return -1;
	int n = snprintf(out, cap, TOPIC_AGENT "%s/tasks", identity + 9);
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* ---------- the table ---------- */

static struct task **slot(struct task_service *s, const char *id)
{
	return &s->bucket[kz_hash(id, strlen(id)) & (s->n_bucket - 1)];
}

struct task *task_find(struct task_service *s, const char *id)
{
	for (struct task *t = *slot(s, id); t; t = t->next)
		if (!strcmp(t->id, id))
			return t;
	return NULL;
}

static void task_drop(struct task_service *s, struct task *t)
{
	for (struct task **pp = slot(s, t->id); *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	if (!task_state_final(t->state))
		s->open--;
	s->count--;
	task_free_fields(t);
	free(t);
}

struct task_agent *task_agent_find(struct task_service *s, const char *id)
{
	for (struct task_agent *a = s->agents; a; a = a->next)
		if (!strcmp(a->id, id))
			return a;
	return NULL;
}

bool task_visible(struct task_service *s, const struct kz_policy *pol, const struct kz_subject *rd, struct task *t)
{
	(void)s;
	if (!pol)
		return true;
	const char *why;
	char topic[TASK_ID_MAX + 16];
	snprintf(topic, sizeof topic, TOPIC_TASK "%s", t->id);
	if (strcmp(rd->id, t->tasker) && strcmp(rd->id, t->assignee) &&
	    !kz_policy_subscribe(pol, rd, topic, strlen(topic), &why))
		return false;
	if (t->lab_gen != pol->gen) {
		char canon[KZ_LABEL_MAX_LEN + 1], w[160];
		size_t cn;
		const char *txt = t->label[0] ? t->label : pol->default_text;
		t->lab_ok = !kz_label_parse(pol, txt, strlen(txt), &t->lab, canon, &cn, w, sizeof w);
		t->lab_gen = pol->gen;
	}
	return t->lab_ok && kz_dominates(pol, rd, &t->lab, &why);
}

/* ---------- records ---------- */

static void audit(const char *identity, const char *id, const char *what, const char *label, bool allow,
		  const char *reason, const struct kz_policy *pol)
{
	char res[TASK_ID_MAX + 80];
	snprintf(res, sizeof res, "%s %s", id, what);
	struct kz_audit_entry e = { .subject = identity, .action = "task", .resource = res, .label = label,
				    .allow = allow, .reason = reason, .policy = pol ? pol->version : NULL };
	kz_audit(&e);
}

static void sendq_push(struct task_service *s, const char *id)
{
	struct sendq *q = calloc(1, sizeof *q);
	if (!q)
		return; /* sent at the next start instead */
	snprintf(q->id, sizeof q->id, "%s", id);
	q->s = s;
	pthread_mutex_lock(&sendq_lock);
	q->next = sendq_head;
	sendq_head = q;
	pthread_mutex_unlock(&sendq_lock);
}

static void record_done(void *ctx, int status, uint64_t seq)
{
	(void)seq;
	struct task_done *d = ctx;
	struct task_service *s = d->s;
	if (status == KZ_OK) {
		if (s->cfg.deliver) {
			s->cfg.deliver(s->cfg.deliver_ctx, d->topic, d->rec, d->rec_len);
			if (d->inbox[0])
				s->cfg.deliver(s->cfg.deliver_ctx, d->inbox, d->rec, d->rec_len);
		}
		if (d->created) {
			sendq_push(s, d->id);
			pthread_cond_signal(&s->cond);
		}
	} else {
		kz_error("tasks: the record of task %s was not stored: %s", d->id, kz_strerror(status));
		if (d->http) {
			d->status = 503;
			free(d->body);
			d->body = NULL;
		}
	}
	free(d->rec);
	if (d->http)
		task_api_answer(d); /* frees d */
	else
		free(d);
}

/* The record of t's current state, by identity, ready for task_submit (NULL: out of memory). */
static struct task_done *record_of(struct task_service *s, const struct task *t, const char *identity)
{
	struct task_done *d = calloc(1, sizeof *d);
	if (!d)
		return NULL;
	d->s = s;
	snprintf(d->id, sizeof d->id, "%s", t->id);
	snprintf(d->topic, sizeof d->topic, TOPIC_TASK "%s", t->id);
	if (task_inbox_topic(t->assignee, d->inbox, sizeof d->inbox))
		d->inbox[0] = 0;
	struct kz_buf json, rec;
	kz_buf_init(&json, 0);
	kz_buf_init(&rec, 0);
	static const uint8_t prec[] = { [TASK_FLASH] = KZ_PREC_FLASH, [TASK_IMMEDIATE] = KZ_PREC_IMMEDIATE,
					[TASK_PRIORITY] = KZ_PREC_PRIORITY, [TASK_ROUTINE] = KZ_PREC_ROUTINE };
	struct kz_record r = { .time_ns = kz_now_wall_ns(), .qos = 1, .service = true, .precedence = prec[t->prec] };
	kz_uuidv7(r.id, r.time_ns / 1000000);
	r.topic = (struct kz_bytes){ (const uint8_t *)d->topic, (uint32_t)strlen(d->topic) };
	r.origin_node = (struct kz_bytes){ (const uint8_t *)s->node_id, (uint32_t)strlen(s->node_id) };
	r.origin_id = (struct kz_bytes){ (const uint8_t *)identity, (uint32_t)strlen(identity) };
	r.label = (struct kz_bytes){ (const uint8_t *)t->label, (uint32_t)strlen(t->label) };
	r.content_type = (struct kz_bytes){ (const uint8_t *)"application/json", 16 };
	if (task_to_json(t, &json) == KZ_OK) {
		r.payload = (struct kz_bytes){ kz_buf_head(&json), (uint32_t)json.len };
		if (kz_record_encode(&r, &rec) == KZ_OK && (d->rec = malloc(rec.len))) {
			memcpy(d->rec, kz_buf_head(&rec), rec.len);
			d->rec_len = rec.len;
		}
	}
	kz_buf_cleanup(&json);
	kz_buf_cleanup(&rec);
	if (!d->rec) {
		free(d);
		return NULL;
	}
	return d;
}

void task_submit(struct task_service *s, struct task_done *d)
{
	uint8_t *data = malloc(d->rec_len);
	if (!data) {
		record_done(d, KZ_ENOMEM, 0);
		return;
	}
	memcpy(data, d->rec, d->rec_len);
	struct kz_store_item it = { data, (uint32_t)d->rec_len, record_done, d, NULL, false };
	kz_store_submit(s->cfg.store, &it, 1);
}

static void hist_add(struct task *t, enum task_party by, uint64_t now)
{
	if (t->n_hist == TASK_HIST_MAX) { /* keep the first and the latest */
		memmove(&t->hist[1], &t->hist[2], (TASK_HIST_MAX - 2) * sizeof t->hist[0]);
		t->n_hist--;
	}
	t->hist[t->n_hist++] = (struct task_hist){ (uint8_t)t->state, (uint8_t)by, t->version, now };
	t->by = (uint8_t)by;
	t->updated_ns = now;
}

/* Applies a legal move and makes its record (handed back in *wait when wait is not NULL,
 * else submitted here). */
static int apply(struct task_service *s, struct task *t, enum task_state to, enum task_party by,
		 const char *identity, const char *reason, const char *result, size_t result_len,
		 struct task_done **wait)
{
	bool was_open = !task_state_final(t->state);
	t->state = to;
	t->version++;
	free(t->reason);
	free(t->result);
	t->reason = reason ? strdup(reason) : NULL;
	t->result = NULL;
	if (result && (t->result = malloc(result_len + 1))) {
		memcpy(t->result, result, result_len);
		t->result[result_len] = 0;
	}
	hist_add(t, by, kz_now_wall_ns());
	if (was_open && task_state_final(to))
		s->open--;
	s->st.moved++;
	char what[64];
	snprintf(what, sizeof what, "%s v%llu", task_state_name(to), (unsigned long long)t->version);
	audit(identity, t->id, what, t->label, true, task_party_name(by), task_policy(s));
	struct task_done *d = record_of(s, t, identity);
	if (!d) {
		kz_error("tasks: out of memory writing the record of task %s", t->id);
		return TS_FULL;
	}
	if (wait)
		*wait = d;
	else
		task_submit(s, d);
	return TS_OK;
}

/* ---------- changes ---------- */

static int refuse(struct task_service *s, const char *identity, const char *id, const char *what, int status,
		  const char *reason, const char **why)
{
	s->st.refused++;
	audit(identity, id ? id : "-", what, NULL, false, reason, task_policy(s));
	*why = reason;
	return status;
}

static bool agent_has_kind(struct task_service *s, const char *agent, const char *kind)
{
	struct task_agent *a = task_agent_find(s, agent);
	for (unsigned i = 0; a && i < a->n; i++)
		if (!strcmp(a->kinds[i], kind))
			return true;
	return false;
}

static char *copy_span(const char *p, size_t n)
{
	char *c = malloc(n + 1);
	if (c) {
		memcpy(c, p, n);
		c[n] = 0;
	}
	return c;
}

static char *entities_json(const struct task_request *rq)
{
	if (!rq->n_entities)
		return NULL;
	struct kz_buf b;
	kz_buf_init(&b, 0);
	int rc = kz_buf_append(&b, "[", 1);
	for (unsigned i = 0; !rc && i < rq->n_entities; i++)
		rc = (i && kz_buf_append(&b, ",", 1)) || kz_json_put_str(&b, rq->entities[i]);
	char *out = rc || kz_buf_append(&b, "]", 1) ? NULL : copy_span((const char *)kz_buf_head(&b), b.len);
	kz_buf_cleanup(&b);
	return out;
}

int task_create(struct task_service *s, const char *identity, const char *json, size_t n, const char *id_from_topic,
		const char *label_text, struct task **out, struct task_done **wait, const char **why, char *whybuf,
		size_t whycap)
{
	struct task_request rq;
	const char *dw;
	if (task_request_decode(&s->doc, json, n, &rq, &dw)) {
		snprintf(whybuf, whycap, "task: %s", dw);
		return refuse(s, identity, id_from_topic, "create", TS_BAD, whybuf, why);
	}
	char made[40];
	if (id_from_topic) {
		if (rq.id && strcmp(rq.id, id_from_topic))
			return refuse(s, identity, id_from_topic, "create", TS_BAD, "the task's id is not the topic's", why);
		rq.id = id_from_topic;
	} else if (!rq.id) {
		uint8_t u[16];
		kz_uuidv7(u, kz_now_wall_ns() / 1000000);
		kz_uuid_format(u, made);
		rq.id = made;
	}
	if (task_find(s, rq.id))
		return refuse(s, identity, rq.id, "create", TS_CONFLICT, "a task with this id exists", why);
	const struct kz_policy *pol = task_policy(s);
	char canon[KZ_LABEL_MAX_LEN + 1] = "";
	if (pol) {
		struct kz_subject tasker, agent;
		kz_subject_init(pol, identity, &tasker);
		kz_subject_init(pol, rq.assignee, &agent);
		const char *pw;
		if (!kz_policy_task(pol, &tasker, &agent, rq.kind, &pw))
			return refuse(s, identity, rq.id, "create", TS_FORBIDDEN, pw, why);
		struct kz_label lab;
		size_t cn;
		char lw[160];
		const char *lt = label_text && *label_text ? label_text : pol->default_text;
		if (kz_label_parse(pol, lt, strlen(lt), &lab, canon, &cn, lw, sizeof lw)) {
			snprintf(whybuf, whycap, "kz-label: %s", lw);
			return refuse(s, identity, rq.id, "create", TS_BAD, whybuf, why);
		}
		if (!kz_policy_may_label(pol, &tasker, &lab, &pw)) {
			snprintf(whybuf, whycap, "kz-label: %s", pw);
			return refuse(s, identity, rq.id, "create", TS_FORBIDDEN, whybuf, why);
		}
		if (!kz_dominates(pol, &agent, &lab, &pw)) {
			snprintf(whybuf, whycap, "the agent may not read a task with this label: %s", pw);
			return refuse(s, identity, rq.id, "create", TS_FORBIDDEN, whybuf, why);
		}
	}
	if (!agent_has_kind(s, rq.assignee, rq.kind)) {
		snprintf(whybuf, whycap, "%s has not registered the kind '%s' (kz/agent/<identity>/kinds)", rq.assignee,
			 rq.kind);
		return refuse(s, identity, rq.id, "create", TS_CONFLICT, whybuf, why);
	}
	if (s->count >= s->cfg.max_tasks)
		return refuse(s, identity, rq.id, "create", TS_FULL, "the node holds task.max_tasks tasks", why);
	uint64_t now = kz_now_wall_ns();
	if (rq.deadline_ns && rq.deadline_ns <= now)
		return refuse(s, identity, rq.id, "create", TS_BAD, "deadline: already past", why);
	struct task *t = calloc(1, sizeof *t);
	if (!t)
		return refuse(s, identity, rq.id, "create", TS_FULL, "out of memory", why);
	snprintf(t->id, sizeof t->id, "%s", rq.id);
	snprintf(t->kind, sizeof t->kind, "%s", rq.kind);
	t->assignee = strdup(rq.assignee);
	t->tasker = strdup(identity);
	t->label = strdup(canon);
	t->params = rq.params ? copy_span(rq.params, rq.params_len) : NULL;
	t->entities = entities_json(&rq);
	t->prec = rq.precedence;
	t->deadline_ns = rq.deadline_ns;
	t->created_ns = now;
	t->state = TASK_CREATED;
	t->version = 1;
	hist_add(t, TASK_BY_TASKER, now);
	if (!t->assignee || !t->tasker || !t->label || (rq.params && !t->params) || (rq.n_entities && !t->entities)) {
		task_free_fields(t);
		free(t);
		return refuse(s, identity, rq.id, "create", TS_FULL, "out of memory", why);
	}
	struct task_done *d = record_of(s, t, identity);
	if (!d) {
		task_free_fields(t);
		free(t);
		return refuse(s, identity, rq.id, "create", TS_FULL, "out of memory", why);
	}
	d->created = true;
	struct task **sl = slot(s, t->id);
	t->next = *sl;
	*sl = t;
	s->count++;
	s->open++;
	s->st.created++;
	audit(identity, t->id, "CREATED v1", t->label, true, "tasker", pol);
	if (wait)
		*wait = d;
	else
		task_submit(s, d);
	*out = t;
	return TS_CREATED;
}

int task_move(struct task_service *s, const char *identity, const char *id, const char *json, size_t n,
	      struct task **out, struct task_done **wait, const char **why, char *whybuf, size_t whycap)
{
	struct task *t = task_find(s, id);
	const struct kz_policy *pol = task_policy(s);
	if (t && pol) {
		struct kz_subject rd;
		kz_subject_init(pol, identity, &rd);
		if (!task_visible(s, pol, &rd, t))
			t = NULL;
	}
	if (!t)
		return refuse(s, identity, id, "move", TS_NOTFOUND, "no such task", why);
	struct task_move mv;
	const char *dw;
	if (task_move_decode(&s->doc, json, n, &mv, &dw)) {
		snprintf(whybuf, whycap, "transition: %s", dw);
		return refuse(s, identity, id, "move", TS_BAD, whybuf, why);
	}
	char what[64];
	snprintf(what, sizeof what, "%s from v%llu", task_state_name(mv.to), (unsigned long long)mv.from_version);
	bool is_agent = !strcmp(identity, t->assignee), is_tasker = !strcmp(identity, t->tasker);
	if (!is_agent && !is_tasker)
		return refuse(s, identity, id, what, TS_FORBIDDEN, "only the task's tasker and its agent move it", why);
	/* One identity may be both (it tasked itself): the move decides which party it acts as. */
	enum task_party party = is_agent ? TASK_BY_AGENT : TASK_BY_TASKER;
	const char *bad = task_transition_why(t->state, mv.to, party);
	if (bad && is_agent && is_tasker && !task_transition_why(t->state, mv.to, TASK_BY_TASKER)) {
		party = TASK_BY_TASKER;
		bad = NULL;
	}
	if (bad) {
		snprintf(whybuf, whycap, "%s -> %s: %s", task_state_name(t->state), task_state_name(mv.to), bad);
		return refuse(s, identity, id, what, task_state_final(t->state) ? TS_CONFLICT : TS_FORBIDDEN, whybuf,
			      why);
	}
	if (mv.from_version != t->version) {
		snprintf(whybuf, whycap, "version %llu is not the task's current version %llu (state %s)",
			 (unsigned long long)mv.from_version, (unsigned long long)t->version, task_state_name(t->state));
		return refuse(s, identity, id, what, TS_CONFLICT, whybuf, why);
	}
	int rc = apply(s, t, mv.to, party, identity, mv.reason, mv.result, mv.result_len, wait);
	if (rc != TS_OK)
		return refuse(s, identity, id, what, rc, "out of memory", why);
	*out = t;
	return TS_OK;
}

/* {"kinds": ["observe", ...]} */
int task_kinds_set(struct task_service *s, const char *identity, const char *json, size_t n, bool write_record,
		   const char **why)
{
	if (kz_json_parse(&s->doc, json, n) || !kz_json_is(kz_json_root(&s->doc), KZ_JSON_OBJECT)) {
		*why = "kinds: a JSON object {\"kinds\": [\"observe\", ...]}";
		return TS_BAD;
	}
	const struct kz_json *o = kz_json_root(&s->doc), *k = kz_json_get(o, "kinds");
	if (!kz_json_is(k, KZ_JSON_ARRAY) || o->len != 1 || k->len > s->cfg.max_kinds) {
		*why = "kinds: {\"kinds\": [...]} with at most task.max_kinds kinds";
		return TS_BAD;
	}
	KZ_JSON_FOR(v, k) {
		if (!kz_json_is(v, KZ_JSON_STRING) || !kz_name_valid(v->s, v->len, TASK_KIND_MAX)) {
			*why = "kinds: each 1 to 64 bytes of [A-Za-z0-9._:@~-]";
			return TS_BAD;
		}
	}
	struct task_agent *a = task_agent_find(s, identity);
	if (!a) {
		if (s->n_agents >= s->cfg.max_agents) {
			*why = "the node holds task.max_agents agents";
			return TS_FULL;
		}
		if (!(a = calloc(1, sizeof *a)) || !(a->id = strdup(identity))) {
			free(a);
			*why = "out of memory";
			return TS_FULL;
		}
		a->next = s->agents;
		s->agents = a;
		s->n_agents++;
	}
	for (unsigned i = 0; i < a->n; i++)
		free(a->kinds[i]);
	free(a->kinds);
	a->n = 0;
	a->kinds = calloc(k->len ? k->len : 1, sizeof *a->kinds);
	KZ_JSON_FOR(v, k)
		if (a->kinds && (a->kinds[a->n] = strdup(v->s)))
			a->n++;
	if (write_record) { /* over HTTPS: the registration is kept as a record, as a PUBLISH's is */
		char topic[600];
		const struct kz_policy *pol = task_policy(s);
		const char *label = pol ? pol->default_text : "";
		snprintf(topic, sizeof topic, TOPIC_AGENT "%s/kinds", identity + 9);
		struct kz_record r = { .time_ns = kz_now_wall_ns(), .qos = 1, .service = true };
		kz_uuidv7(r.id, r.time_ns / 1000000);
		r.topic = (struct kz_bytes){ (const uint8_t *)topic, (uint32_t)strlen(topic) };
		r.origin_node = (struct kz_bytes){ (const uint8_t *)s->node_id, (uint32_t)strlen(s->node_id) };
		r.origin_id = (struct kz_bytes){ (const uint8_t *)identity, (uint32_t)strlen(identity) };
		r.label = (struct kz_bytes){ (const uint8_t *)label, (uint32_t)strlen(label) };
		r.payload = (struct kz_bytes){ (const uint8_t *)json, (uint32_t)n };
		struct kz_buf rec;
		kz_buf_init(&rec, 0);
		uint8_t *data;
		if (kz_record_encode(&r, &rec) == KZ_OK && (data = malloc(rec.len))) {
			memcpy(data, kz_buf_head(&rec), rec.len);
			struct kz_store_item it = { data, (uint32_t)rec.len, NULL, NULL, NULL, false };
			kz_store_submit(s->cfg.store, &it, 1);
		}
		kz_buf_cleanup(&rec);
	}
	audit(identity, identity, "kinds", NULL, true, "registered", task_policy(s));
	return TS_OK;
}

/* ---------- MQTT ---------- */

static const char *mqtt_why(int st, uint8_t *rc, const char *why)
{
	*rc = st == TS_BAD ? 0x99 : st == TS_FORBIDDEN || st == TS_NOTFOUND ? 0x87 : st == TS_FULL ? 0x97 : 0x83;
	return why;
}

const char *task_service_publish(struct task_service *s, const char *identity, const uint8_t *topic, size_t tlen,
				 const uint8_t *p, size_t n, const char *label, uint8_t *rc)
{
	static _Thread_local char whybuf[700];
	const char *tp = (const char *)topic, *why = NULL;
	size_t tl = sizeof TOPIC_TASK - 1, al = sizeof TOPIC_AGENT - 1;
	if (!s || !identity)
		return NULL;
	if (tlen > tl && !memcmp(tp, TOPIC_TASK, tl)) {
		const char *id = tp + tl, *sl = memchr(id, '/', tlen - tl);
		size_t idn = sl ? (size_t)(sl - id) : tlen - tl;
		const char *sub = sl ? sl + 1 : "";
		size_t subn = sl ? tlen - (size_t)(sub - tp) : 0;
		char idbuf[TASK_ID_MAX + 1];
		if (!sl) {
			*rc = 0x87;
			return "kz/task/<id> is the node's record of the task: create on kz/task/<id>/create, move on "
			       "kz/task/<id>/state";
		}
		if (idn == 0 || idn > TASK_ID_MAX) {
			*rc = 0x90;
			return "kz/task/<id>/...: the id is 1 to 128 bytes";
		}
		memcpy(idbuf, id, idn);
		idbuf[idn] = 0;
		struct task *t;
		int st;
		pthread_mutex_lock(&s->lock);
		if (subn == 6 && !memcmp(sub, "create", 6))
			st = task_create(s, identity, (const char *)p, n, idbuf, label, &t, NULL, &why, whybuf,
					 sizeof whybuf);
		else if (subn == 5 && !memcmp(sub, "state", 5))
			st = task_move(s, identity, idbuf, (const char *)p, n, &t, NULL, &why, whybuf, sizeof whybuf);
		else {
			st = TS_BAD;
			why = "kz/task/<id>/ takes create and state";
		}
		pthread_mutex_unlock(&s->lock);
		return st == TS_OK || st == TS_CREATED ? NULL : mqtt_why(st == TS_BAD && !why ? TS_BAD : st, rc, why);
	}
	if (tlen > al && !memcmp(tp, TOPIC_AGENT, al)) {
		size_t own = strncmp(identity, "spiffe://", 9) ? 0 : strlen(identity) - 9;
		bool mine = own && tlen > al + own && !memcmp(tp + al, identity + 9, own) && tp[al + own] == '/';
		const char *rest = mine ? tp + al + own + 1 : "";
		size_t rn = mine ? tlen - (al + own + 1) : 0;
		if (mine && rn == 5 && !memcmp(rest, "kinds", 5)) {
			pthread_mutex_lock(&s->lock);
			int st = task_kinds_set(s, identity, (const char *)p, n, false, &why);
			pthread_mutex_unlock(&s->lock);
			return st == TS_OK ? NULL : mqtt_why(st, rc, why);
		}
		if (!mine) {
			*rc = 0x87;
			return "kz/agent/<identity>/ is that agent's own";
		}
		if (rn == 5 && !memcmp(rest, "tasks", 5)) {
			*rc = 0x87;
			return "kz/agent/<identity>/tasks is written by the node";
		}
	}
	return NULL;
}

void task_service_snapshot(struct task_service *s, const char *filter, size_t filter_len, task_snapshot_fn cb,
			   void *ctx)
{
	size_t al = sizeof TOPIC_AGENT - 1;
	if (!s || filter_len <= al + 6 || memcmp(filter, TOPIC_AGENT, al) ||
	    memcmp(filter + filter_len - 6, "/tasks", 6))
		return;
	char id[600];
	int k = snprintf(id, sizeof id, "spiffe://%.*s", (int)(filter_len - al - 6), filter + al);
	if (k <= 0 || (size_t)k >= sizeof id || strchr(id, '+') || strchr(id, '#'))
		return;
	struct kz_buf b;
	kz_buf_init(&b, 0);
	char topic[700];
	snprintf(topic, sizeof topic, "%.*s", (int)filter_len, filter);
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n_bucket; i++)
		for (struct task *t = s->bucket[i]; t; t = t->next) {
			if (task_state_final(t->state) || strcmp(t->assignee, id))
				continue;
			kz_buf_reset(&b);
			if (task_to_json(t, &b) == KZ_OK)
				cb(ctx, topic, kz_buf_head(&b), b.len, t->label);
		}
	pthread_mutex_unlock(&s->lock);
	kz_buf_cleanup(&b);
}

/* ---------- the node's moves ---------- */

static void node_moves(struct task_service *s, uint64_t now)
{
	pthread_mutex_lock(&sendq_lock);
	struct sendq *q = sendq_head, *keep = NULL;
	sendq_head = NULL;
	pthread_mutex_unlock(&sendq_lock);
	while (q) {
		struct sendq *nx = q->next;
		if (q->s != s) { /* another service's (tests open several) */
			q->next = keep;
			keep = q;
		} else {
			struct task *t = task_find(s, q->id);
			if (t && t->state == TASK_CREATED)
				(void)apply(s, t, TASK_SENT, TASK_BY_NODE, s->node_identity, NULL, NULL, 0, NULL);
			free(q);
		}
		q = nx;
	}
	if (keep) {
		pthread_mutex_lock(&sendq_lock);
		struct sendq *tail = keep;
		while (tail->next)
			tail = tail->next;
		tail->next = sendq_head;
		sendq_head = keep;
		pthread_mutex_unlock(&sendq_lock);
	}
	uint64_t keep_ns = s->cfg.ended_keep_ms * 1000000ull;
	for (size_t i = 0; i < s->n_bucket; i++)
		for (struct task *t = s->bucket[i], *nx; t; t = nx) {
			nx = t->next;
			if (!task_state_final(t->state) && t->deadline_ns && now >= t->deadline_ns) {
				if (apply(s, t, TASK_EXPIRED, TASK_BY_NODE, s->node_identity, "the deadline passed", NULL,
					  0, NULL) == TS_OK)
					s->st.expired++;
			} else if (task_state_final(t->state) && t->updated_ns + keep_ns < now) {
				task_drop(s, t);
			}
		}
}

static void *run(void *arg)
{
	struct task_service *s = arg;
	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		struct timespec ts;
		kz_deadline_ms(&ts, 250);
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		if (!s->stop)
			node_moves(s, kz_now_wall_ns());
		kz_json_trim(&s->doc, 1 << 16);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---------- start: the log ---------- */

static int take(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	(void)seq;
	(void)pos;
	struct task_service *s = ctx;
	struct kz_record r;
	const char *why;
	size_t tl = sizeof TOPIC_TASK - 1, al = sizeof TOPIC_AGENT - 1;
	if (kz_record_decode(body, n, &r, &why))
		return 0;
	/* Only this node's task records: another node's (followed in a cluster) are that node's
	 * to decide, send and expire. */
	if (r.service && r.topic.len > tl && !memcmp(r.topic.p, TOPIC_TASK, tl) &&
	    !memchr(r.topic.p + tl, '/', r.topic.len - tl) && r.origin_node.len == strlen(s->node_id) &&
	    !memcmp(r.origin_node.p, s->node_id, r.origin_node.len)) {
		struct task nt;
		if (task_from_json(&s->doc, (const char *)r.payload.p, r.payload.len, &nt))
			return 0;
		struct task *t = task_find(s, nt.id);
		if (t && t->version >= nt.version) {
			task_free_fields(&nt);
			return 0;
		}
		bool was_open = false;
		if (!t) {
			if (s->count >= s->cfg.max_tasks || !(t = calloc(1, sizeof *t))) {
				task_free_fields(&nt);
				return 0;
			}
			struct task **sl = slot(s, nt.id);
			nt.next = *sl;
			*t = nt;
			*sl = t;
			s->count++;
		} else {
			was_open = !task_state_final(t->state);
			struct task *next = t->next;
			task_free_fields(t);
			*t = nt;
			t->next = next;
		}
		s->open += (size_t)!task_state_final(t->state) - (size_t)was_open;
		return 0;
	}
	if (r.topic.len > al + 6 && !memcmp(r.topic.p, TOPIC_AGENT, al) &&
	    !memcmp(r.topic.p + r.topic.len - 6, "/kinds", 6) && r.origin_id.len == r.topic.len - al - 6 + 9 &&
	    !memcmp(r.origin_id.p, "spiffe://", 9) && !memcmp(r.origin_id.p + 9, r.topic.p + al, r.topic.len - al - 6)) {
		char id[600];
		snprintf(id, sizeof id, "%.*s", (int)r.origin_id.len, r.origin_id.p);
		const char *w;
		(void)task_kinds_set(s, id, (const char *)r.payload.p, r.payload.len, false, &w);
	}
	return 0;
}

int task_service_open(const struct task_service_config *cfg, struct task_service **out, char *why, size_t why_len)
{
	struct task_service *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(why, why_len, "out of memory");
		return KZ_ENOMEM;
	}
	s->cfg = *cfg;
	s->node_id = strdup(cfg->node_id ? cfg->node_id : "");
	s->node_identity = strdup(cfg->node_identity ? cfg->node_identity : "node");
	s->n_bucket = 64;
	while (s->n_bucket < cfg->max_tasks / 2 && s->n_bucket < (1u << 24))
		s->n_bucket *= 2;
	s->bucket = calloc(s->n_bucket, sizeof *s->bucket);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	if (!s->bucket || !s->node_id || !s->node_identity) {
		snprintf(why, why_len, "out of memory");
		task_service_close(s);
		return KZ_ENOMEM;
	}
	uint64_t end;
	if (cfg->store && kz_store_scan(cfg->store, 0, NULL, take, s, &end, why, why_len)) {
		task_service_close(s);
		return KZ_EIO;
	}
	/* Created before a stop and not sent yet: sent now. Audit entries from the rebuild
	 * are not decisions: none were written above. */
	for (size_t i = 0; i < s->n_bucket; i++)
		for (struct task *t = s->bucket[i]; t; t = t->next)
			if (t->state == TASK_CREATED)
				sendq_push(s, t->id);
	if (pthread_create(&s->thread, NULL, run, s)) {
		snprintf(why, why_len, "cannot start the task thread");
		task_service_close(s);
		return KZ_ENOMEM;
	}
	s->started = true;
	*out = s;
	return KZ_OK;
}

void task_service_stop(struct task_service *s)
{
	if (!s || !s->started)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	s->started = false;
}

void task_service_close(struct task_service *s)
{
	if (!s)
		return;
	task_service_stop(s);
	for (size_t i = 0; s->bucket && i < s->n_bucket; i++)
		while (s->bucket[i])
			task_drop(s, s->bucket[i]);
	for (struct task_agent *a = s->agents, *nx; a; a = nx) {
		nx = a->next;
		for (unsigned i = 0; i < a->n; i++)
			free(a->kinds[i]);
		free(a->kinds);
		free(a->id);
		free(a);
	}
	pthread_mutex_lock(&sendq_lock);
	for (struct sendq **pp = &sendq_head; *pp;) {
		struct sendq *q = *pp;
		if (q->s == s) {
			*pp = q->next;
			free(q);
		} else {
			pp = &q->next;
		}
	}
	pthread_mutex_unlock(&sendq_lock);
	kz_json_free(&s->doc);
	free(s->bucket);
	free(s->node_id);
	free(s->node_identity);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

void task_service_stats(struct task_service *s, struct task_service_stats *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->st;
	out->tasks = s->count;
	out->open = s->open;
	out->agents = s->n_agents;
	pthread_mutex_unlock(&s->lock);
}
