/* task_service_internal.h — the task service's state, shared by its files (task_service.c:
 * the table, changes and records; task_json.c: a task as JSON and back; task_api.c: HTTPS). */
#ifndef KZ_TASK_SERVICE_INTERNAL_H
#define KZ_TASK_SERVICE_INTERNAL_H

#include "services/task/task_service.h"
#include "base/kz_json.h"
#include "trust/policy.h"

#include <pthread.h>

#define TASK_HIST_MAX 16 /* the longest path has 9 states; a few more for cancels */

struct task_hist {
	uint8_t state, by; /* enum task_state, enum task_party */
	uint64_t version, time_ns;
};

struct task {
	char id[TASK_ID_MAX + 1];
	char kind[TASK_KIND_MAX + 1];
	char *assignee, *tasker, *label; /* owned; label "" without policy */
	char *params;                    /* owned JSON object text, NULL: none */
	char *entities;                  /* owned JSON array text, NULL: none */
	char *reason, *result;           /* of the last move; result JSON text */
	enum task_precedence prec;
	enum task_state state;
	uint64_t version;
	uint64_t deadline_ns, created_ns, updated_ns;
	uint8_t by;                      /* the party of the last move */
	bool send_due;                   /* created and durable: the node sends it */
	struct task_hist hist[TASK_HIST_MAX];
	unsigned n_hist;
	struct kz_label lab;             /* compiled against policy generation lab_gen */
	uint32_t lab_gen;
	bool lab_ok;
	struct task *next;               /* hash chain */
};

struct task_agent {
	char *id;
	char **kinds;
	unsigned n;
	struct task_agent *next;
};

struct task_service {
	struct task_service_config cfg;
	char *node_id, *node_identity;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool started, stop, kicked;
	struct task **bucket;
	size_t n_bucket, count, open;
	struct task_agent *agents;
	size_t n_agents;
	struct kz_json_doc doc;  /* decodes, under the lock */
	uint64_t made;           /* ids the node made */
	struct task_service_stats st;
};

/* Results of a change, as HTTP statuses (task_api.c answers with them; MQTT maps them). */
enum { TS_OK = 200, TS_CREATED = 201, TS_BAD = 400, TS_FORBIDDEN = 403, TS_NOTFOUND = 404, TS_CONFLICT = 409,
       TS_FULL = 503 };

/* What a change's record is for once it is durable. */
struct task_done {
	struct task_service *s;
	uint8_t *rec;            /* the encoded record, for delivery */
	size_t rec_len;
	char topic[TASK_ID_MAX + 16];
	char inbox[600];
	bool created;            /* the task was created: the node sends it */
	char id[TASK_ID_MAX + 1];
	/* An HTTPS request waiting for it (NULL: none): answered with status and body. */
	struct kz_http_deferred *http;
	int status;
	char *body;
	size_t body_len;
};

/* ---------- task_service.c (lock held unless said) ---------- */
struct task *task_find(struct task_service *s, const char *id);
/* May the reader see the task (docs/TASKS.md "Who sees a task")? pol NULL: yes. */
bool task_visible(struct task_service *s, const struct kz_policy *pol, const struct kz_subject *rd, struct task *t);
/* Creates a task: status, and *t the task on success; why on failure. wait: the done
 * record to attach an HTTPS answer to (its body filled by the caller), NULL: none. */
int task_create(struct task_service *s, const char *identity, const char *json, size_t n, const char *id_from_topic,
		const char *label_text, struct task **out, struct task_done **wait, const char **why, char *whybuf,
		size_t whycap);
int task_move(struct task_service *s, const char *identity, const char *id, const char *json, size_t n,
	      struct task **out, struct task_done **wait, const char **why, char *whybuf, size_t whycap);
int task_kinds_set(struct task_service *s, const char *identity, const char *json, size_t n, bool write_record,
		   const char **why);
struct task_agent *task_agent_find(struct task_service *s, const char *id);
/* Hands the waiting record (from task_create/task_move) to the store. Lock held. */
void task_submit(struct task_service *s, struct task_done *d);
const struct kz_policy *task_policy(struct task_service *s);

/* ---------- task_json.c ---------- */
int task_to_json(const struct task *t, struct kz_buf *b);
/* A task record's payload back into t (owned strings allocated): 0 or -1. */
int task_from_json(struct kz_json_doc *d, const char *p, size_t n, struct task *t);
void task_free_fields(struct task *t);

/* ---------- task_api.c ---------- */
void task_api_answer(struct task_done *d); /* on the store thread, once durable (or not) */

#endif
