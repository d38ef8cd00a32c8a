/* task.c — a task's states and legal transitions as a table (task.h has the diagram), and
 * the strict decoders of a task request and of a transition. */
#include "services/task/task.h"
#include "base/kz_json.h"
#include "base/kz_time.h"
#include "base/kz_topic.h"

#include <stdio.h>
#include <string.h>

static const char *const STATE_NAMES[TASK_N_STATES] = {
	[TASK_CREATED] = "CREATED",       [TASK_SENT] = "SENT",
	[TASK_RECEIVED] = "RECEIVED",     [TASK_ACKNOWLEDGED] = "ACKNOWLEDGED",
	[TASK_WILCO] = "WILCO",           [TASK_EXECUTING] = "EXECUTING",
	[TASK_DONE_OK] = "DONE_OK",       [TASK_DONE_FAILED] = "DONE_FAILED",
	[TASK_REJECTED] = "REJECTED",     [TASK_CANCEL_REQUESTED] = "CANCEL_REQUESTED",
	[TASK_CANCELLED] = "CANCELLED",   [TASK_EXPIRED] = "EXPIRED",
};

const char *task_state_name(enum task_state s)
{
	return s > 0 && s < TASK_N_STATES ? STATE_NAMES[s] : "?";
}

int task_state_parse(const char *s, enum task_state *out)
{
	for (int i = 1; i < TASK_N_STATES; i++)
		if (!strcmp(s, STATE_NAMES[i])) {
			*out = (enum task_state)i;
			return 0;
		}
	return -1;
}

bool task_state_final(enum task_state s)
{
	return s == TASK_DONE_OK || s == TASK_DONE_FAILED || s == TASK_REJECTED || s == TASK_CANCELLED ||
	       s == TASK_EXPIRED;
}

static const char *const PREC_NAMES[] = { NULL, "FLASH", "IMMEDIATE", "PRIORITY", "ROUTINE" };

const char *task_precedence_name(enum task_precedence p)
{
	return p >= TASK_FLASH && p <= TASK_ROUTINE ? PREC_NAMES[p] : "?";
}

int task_precedence_parse(const char *s, enum task_precedence *out)
{
	for (int i = TASK_FLASH; i <= TASK_ROUTINE; i++)
		if (!strcmp(s, PREC_NAMES[i])) {
			*out = (enum task_precedence)i;
			return 0;
		}
	return -1;
}

const char *task_party_name(enum task_party p)
{
	return p == TASK_BY_TASKER ? "tasker" : p == TASK_BY_AGENT ? "agent" : p == TASK_BY_NODE ? "node" : "?";
}

/* The legal transitions: from, to, by whom. Everything else is refused. */
static const struct {
	uint8_t from, to, by;
} LEGAL[] = {
	{ TASK_CREATED, TASK_SENT, TASK_BY_NODE },
	{ TASK_SENT, TASK_RECEIVED, TASK_BY_AGENT },
	{ TASK_RECEIVED, TASK_ACKNOWLEDGED, TASK_BY_AGENT },
	{ TASK_ACKNOWLEDGED, TASK_WILCO, TASK_BY_AGENT },
	{ TASK_WILCO, TASK_EXECUTING, TASK_BY_AGENT },
	{ TASK_EXECUTING, TASK_DONE_OK, TASK_BY_AGENT },
	{ TASK_EXECUTING, TASK_DONE_FAILED, TASK_BY_AGENT },
	{ TASK_RECEIVED, TASK_REJECTED, TASK_BY_AGENT },
	{ TASK_ACKNOWLEDGED, TASK_REJECTED, TASK_BY_AGENT },
	{ TASK_CREATED, TASK_CANCELLED, TASK_BY_TASKER },
	{ TASK_SENT, TASK_CANCELLED, TASK_BY_TASKER },
	{ TASK_RECEIVED, TASK_CANCEL_REQUESTED, TASK_BY_TASKER },
	{ TASK_ACKNOWLEDGED, TASK_CANCEL_REQUESTED, TASK_BY_TASKER },
	{ TASK_WILCO, TASK_CANCEL_REQUESTED, TASK_BY_TASKER },
	{ TASK_EXECUTING, TASK_CANCEL_REQUESTED, TASK_BY_TASKER },
	{ TASK_CANCEL_REQUESTED, TASK_CANCELLED, TASK_BY_AGENT },
	{ TASK_CANCEL_REQUESTED, TASK_DONE_OK, TASK_BY_AGENT },
	{ TASK_CANCEL_REQUESTED, TASK_DONE_FAILED, TASK_BY_AGENT },
};

const char *task_transition_why(enum task_state from, enum task_state to, enum task_party party)
{
	if (task_state_final(from))
		return "the task has ended (its state is final)";
	if (to == TASK_EXPIRED)
		return party == TASK_BY_NODE ? NULL : "only the node expires a task, at its deadline";
	bool some_party = false;
	for (size_t i = 0; i < sizeof LEGAL / sizeof LEGAL[0]; i++) {
		if (LEGAL[i].from != from || LEGAL[i].to != to)
			continue;
		if (LEGAL[i].by == party)
			return NULL;
		some_party = true;
	}
	if (some_party)
		return to == TASK_CANCELLED || to == TASK_CANCEL_REQUESTED
			       ? (party == TASK_BY_AGENT ? "the tasker cancels a task; its agent confirms a requested cancel"
							 : "a cancel the agent was asked for is the agent's to confirm")
			       : "only the task's agent moves it through its work; the node sends it";
	if (to == TASK_CANCELLED && party == TASK_BY_TASKER)
		return "the agent has the task: ask it with CANCEL_REQUESTED, and it confirms";
	return "not a transition of a task (docs/TASKS.md)";
}

/* ---------- decoders ---------- */

static bool printable(const struct kz_json *v, size_t max)
{
	if (!kz_json_is(v, KZ_JSON_STRING) || v->len == 0 || v->len > max)
		return false;
	for (uint32_t i = 0; i < v->len; i++)
		if ((unsigned char)v->s[i] < 0x20 || v->s[i] == 0x7f)
			return false;
	return true;
}

static bool id_like(const struct kz_json *v, size_t max)
{
	return kz_json_is(v, KZ_JSON_STRING) && kz_name_valid(v->s, v->len, max);
}

static int request_member(const struct kz_json *m, const char *p, struct task_request *t, const char **why)
{
	const char *k = m->key;
	if (!strcmp(k, "id")) {
		if (!id_like(m, TASK_ID_MAX)) {
			*why = "id: 1 to 128 bytes of [A-Za-z0-9._:@~-]";
			return -1;
		}
		t->id = m->s;
	} else if (!strcmp(k, "assignee")) {
		if (!printable(m, 512) || strncmp(m->s, "spiffe://", 9)) {
			*why = "assignee: the agent's SPIFFE ID (spiffe://...)";
			return -1;
		}
		t->assignee = m->s;
	} else if (!strcmp(k, "kind")) {
		if (!id_like(m, TASK_KIND_MAX)) {
			*why = "kind: 1 to 64 bytes of [A-Za-z0-9._:@~-] (observe, goto, ...)";
			return -1;
		}
		t->kind = m->s;
	} else if (!strcmp(k, "parameters")) {
		if (!kz_json_is(m, KZ_JSON_OBJECT) || m->end - m->off > TASK_PARAMS_MAX) {
			*why = "parameters: a JSON object of at most 8192 bytes";
			return -1;
		}
		t->params = p + m->off;
		t->params_len = m->end - m->off;
	} else if (!strcmp(k, "entities")) {
		if (!kz_json_is(m, KZ_JSON_ARRAY) || m->len > TASK_MAX_ENTITIES) {
			*why = "entities: an array of at most 16 entity ids";
			return -1;
		}
		KZ_JSON_FOR(e, m) {
			if (!id_like(e, 128)) {
				*why = "entities: each an entity id (1 to 128 bytes of [A-Za-z0-9._:@~-])";
				return -1;
			}
			t->entities[t->n_entities++] = e->s;
		}
	} else if (!strcmp(k, "precedence")) {
		const char *s = kz_json_str(m);
		if (!s || task_precedence_parse(s, &t->precedence)) {
			*why = "precedence: FLASH, IMMEDIATE, PRIORITY or ROUTINE";
			return -1;
		}
	} else if (!strcmp(k, "deadline")) {
		const char *s = kz_json_str(m);
		if (!s || kz_time_parse(s, &t->deadline_ns) || !t->deadline_ns) {
			*why = "deadline: an RFC 3339 date-time";
			return -1;
		}
	} else if (!strcmp(k, "state") || !strcmp(k, "version") || !strcmp(k, "tasker") || !strcmp(k, "label")) {
		*why = "state, version, tasker and label are the node's (the tasker is the caller; the label comes from "
		       "the request's kz-label or the policy)";
		return -1;
	} else {
		*why = "unknown member (id, assignee, kind, parameters, entities, precedence, deadline)";
		return -1;
	}
	return 0;
}

int task_request_decode(struct kz_json_doc *d, const char *p, size_t n, struct task_request *t, const char **why)
{
	memset(t, 0, sizeof *t);
	t->precedence = TASK_ROUTINE;
	if (kz_json_parse(d, p, n)) {
		*why = "not JSON";
		return -1;
	}
	const struct kz_json *root = kz_json_root(d);
	if (!kz_json_is(root, KZ_JSON_OBJECT)) {
		*why = "a task is a JSON object";
		return -1;
	}
	KZ_JSON_FOR(m, root)
		if (request_member(m, p, t, why))
			return -1;
	if (!t->assignee || !t->kind) {
		*why = "assignee and kind are required";
		return -1;
	}
	return 0;
}

int task_move_decode(struct kz_json_doc *d, const char *p, size_t n, struct task_move *mv, const char **why)
{
	memset(mv, 0, sizeof *mv);
	if (kz_json_parse(d, p, n)) {
		*why = "not JSON";
		return -1;
	}
	const struct kz_json *root = kz_json_root(d);
	if (!kz_json_is(root, KZ_JSON_OBJECT)) {
		*why = "a transition is a JSON object {\"state\", \"version\", \"reason\", \"result\"}";
		return -1;
	}
	bool has_state = false, has_version = false;
	KZ_JSON_FOR(m, root) {
		long long v;
		if (!strcmp(m->key, "state")) {
			const char *s = kz_json_str(m);
			if (!s || task_state_parse(s, &mv->to)) {
				*why = "state: one of CREATED, SENT, RECEIVED, ACKNOWLEDGED, WILCO, EXECUTING, DONE_OK, "
				       "DONE_FAILED, REJECTED, CANCEL_REQUESTED, CANCELLED, EXPIRED";
				return -1;
			}
			has_state = true;
		} else if (!strcmp(m->key, "version")) {
			if (!kz_json_is(m, KZ_JSON_NUMBER) || !kz_json_int(m, &v) || v < 1) {
				*why = "version: the task's version this moves from (a positive integer)";
				return -1;
			}
			mv->from_version = (uint64_t)v;
			has_version = true;
		} else if (!strcmp(m->key, "reason")) {
			if (!printable(m, 512)) {
				*why = "reason: a string of 1 to 512 bytes without control characters";
				return -1;
			}
			mv->reason = m->s;
		} else if (!strcmp(m->key, "result")) {
			if (!kz_json_is(m, KZ_JSON_OBJECT) || m->end - m->off > TASK_PARAMS_MAX) {
				*why = "result: a JSON object of at most 8192 bytes";
				return -1;
			}
			mv->result = p + m->off;
			mv->result_len = m->end - m->off;
		} else {
			*why = "unknown member (state, version, reason, result)";
			return -1;
		}
	}
	if (!has_state || !has_version) {
		*why = "state and version are required";
		return -1;
	}
	if (mv->result && mv->to != TASK_DONE_OK && mv->to != TASK_DONE_FAILED) {
		*why = "result goes with DONE_OK or DONE_FAILED";
		return -1;
	}
	return 0;
}
