/* task.h — a task's life (docs/TASKS.md): its states, who may move it from which state to
 * which, and the JSON of a task and of a transition as they come from a tasker or an agent.
 *
 *   CREATED --node--> SENT --agent--> RECEIVED --agent--> ACKNOWLEDGED --agent--> WILCO
 *      --agent--> EXECUTING --agent--> DONE_OK | DONE_FAILED
 *   RECEIVED, ACKNOWLEDGED --agent--> REJECTED
 *   CREATED, SENT --tasker--> CANCELLED           (the agent has not seen it: nobody to ask)
 *   RECEIVED ... EXECUTING --tasker--> CANCEL_REQUESTED --agent--> CANCELLED
 *                                                       --agent--> DONE_OK | DONE_FAILED
 *                                                                  (it finished first)
 *   any state but a final one --node, at the deadline--> EXPIRED
 *
 * Final: DONE_OK, DONE_FAILED, REJECTED, CANCELLED, EXPIRED. Every transition names the
 * version it moves from (the task's version counts its transitions), so two parties that
 * race cannot both win. */
#ifndef KZ_TASK_H
#define KZ_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kz_json_doc;

enum task_state {
	TASK_CREATED = 1,
	TASK_SENT,
	TASK_RECEIVED,
	TASK_ACKNOWLEDGED,
	TASK_WILCO,
	TASK_EXECUTING,
	TASK_DONE_OK,
	TASK_DONE_FAILED,
	TASK_REJECTED,
	TASK_CANCEL_REQUESTED,
	TASK_CANCELLED,
	TASK_EXPIRED,
};
#define TASK_N_STATES 13

enum task_party { TASK_BY_TASKER = 1, TASK_BY_AGENT, TASK_BY_NODE };

/* STANAG / ACP 121 precedence, highest first. */
enum task_precedence { TASK_FLASH = 1, TASK_IMMEDIATE, TASK_PRIORITY, TASK_ROUTINE };

const char *task_state_name(enum task_state s);
/* 0, or -1 when s is not a state's name (upper case, as in docs/TASKS.md). */
int task_state_parse(const char *s, enum task_state *out);
bool task_state_final(enum task_state s);
const char *task_precedence_name(enum task_precedence p);
int task_precedence_parse(const char *s, enum task_precedence *out);
const char *task_party_name(enum task_party p);

/* NULL when party may move a task from `from` to `to`, else why not (for the 409/403 body
 * and the audit entry). */
const char *task_transition_why(enum task_state from, enum task_state to, enum task_party party);

#define TASK_ID_MAX 128
#define TASK_KIND_MAX 64
#define TASK_MAX_ENTITIES 16
#define TASK_PARAMS_MAX 8192

/* A task as a tasker creates it (its JSON). Strings borrow from the kz_json_doc. */
struct task_request {
	const char *id;          /* NULL: the node makes one */
	const char *assignee;    /* the agent's SPIFFE ID */
	const char *kind;
	const char *params;      /* the parameters object's JSON text (not NUL terminated), NULL: none */
	size_t params_len;
	const char *entities[TASK_MAX_ENTITIES];
	unsigned n_entities;
	enum task_precedence precedence; /* default ROUTINE */
	uint64_t deadline_ns;    /* 0: none */
};
/* 0, or -1 with *why. */
int task_request_decode(struct kz_json_doc *d, const char *p, size_t n, struct task_request *t, const char **why);

/* A transition as a party asks for it. */
struct task_move {
	enum task_state to;
	uint64_t from_version;   /* the version it moves from */
	const char *reason;      /* optional, at most 512 bytes */
	const char *result;      /* optional JSON object text (DONE_*), not NUL terminated */
	size_t result_len;
};
int task_move_decode(struct kz_json_doc *d, const char *p, size_t n, struct task_move *m, const char **why);

#endif
