/* task_service.h — the node's tasks (docs/TASKS.md): the current state of every task in
 * memory, every transition a versioned record on kz/task/<id> (payload: the whole task after
 * it) and an audit entry, rebuilt from the log at start; agents' registered kinds; the node's
 * own moves (SENT once the creation is durable, EXPIRED at the deadline); the HTTPS API
 * under /api/v1/tasks and /api/v1/agents; and the MQTT topics (task_service_publish).
 *
 * Every change is decided under the service's lock against the state in memory (legal move,
 * right party, the version it names), applied there, and its record submitted before the
 * lock is released: records reach the log in the order the changes were decided, so the
 * state rebuilt from the log is the state that was served. An HTTPS answer waits until its
 * record is durable; over MQTT the PUBLISH's own record follows the task's, so its PUBACK
 * does too. Tasks live on the node that holds them (a cluster's followers do not act on
 * other nodes' tasks). */
#ifndef KZ_TASK_SERVICE_H
#define KZ_TASK_SERVICE_H

#include "services/task/task.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kz_http;
struct kz_policy;
struct kz_store;

struct task_service_config {
	struct kz_store *store;              /* borrowed: outlives the service */
	_Atomic(struct kz_policy *) *policy; /* the node's policy (NULL inside: policy.open) */
	const char *node_id;                 /* origin node of its records (copied) */
	const char *node_identity;           /* the identity of the node's own moves (copied) */
	uint32_t max_tasks;                  /* tasks held (open and recently ended) */
	uint32_t max_agents;                 /* agents with registered kinds */
	uint32_t max_kinds;                  /* kinds one agent registers */
	uint64_t ended_keep_ms;              /* an ended task is dropped from memory after this */
	uint32_t max_page;                   /* tasks in one answer */
	/* A durable record to MQTT subscribers of topic (which may differ from the record's:
	 * the agent's inbox), any thread. NULL: none. */
	void (*deliver)(void *ctx, const char *topic, const uint8_t *rec, size_t n);
	void *deliver_ctx;
};

struct task_service;

/* Reads every task record of the log, then starts the thread of the node's moves. */
int task_service_open(const struct task_service_config *cfg, struct task_service **out, char *why, size_t why_len);
/* Stops the thread of the node's moves: nothing more is submitted to the store. The records
 * already submitted still call back into the service when the store writes them, so close
 * it only after the store has closed. */
void task_service_stop(struct task_service *s);
void task_service_close(struct task_service *s);
int task_service_routes(struct task_service *s, struct kz_http *h);

/* A PUBLISH the decision point allowed, on the service's topics (docs/TASKS.md "MQTT"):
 *   kz/task/<id>/create   a task request (label: the PUBLISH's);
 *   kz/task/<id>/state    a transition;
 *   kz/agent/<identity>/kinds   {"kinds": [...]}, by that identity;
 *   kz/task/<id>, kz/agent/<identity>/tasks   the node's own: refused.
 * NULL when the PUBLISH may be stored (it was acted on, or is not the service's), else why
 * not, with *rc its MQTT reason code. identity: the publisher's; label: NULL without policy. */
const char *task_service_publish(struct task_service *s, const char *identity, const uint8_t *topic, size_t tlen,
				 const uint8_t *p, size_t n, const char *label, uint8_t *rc);

/* Open tasks of the agent whose inbox (kz/agent/<identity>/tasks) the filter names, each as
 * its record's payload with its label, for a subscription made with kz-snapshot. */
typedef void (*task_snapshot_fn)(void *ctx, const char *topic, const uint8_t *json, size_t n, const char *label);
void task_service_snapshot(struct task_service *s, const char *filter, size_t filter_len, task_snapshot_fn cb,
			   void *ctx);

struct task_service_stats {
	uint64_t tasks, open, agents;
	uint64_t created, moved, refused, expired;
};
void task_service_stats(struct task_service *s, struct task_service_stats *out);

/* The inbox topic of an identity: kz/agent/<identity without spiffe://>/tasks. */
int task_inbox_topic(const char *identity, char *out, size_t cap);

#endif
