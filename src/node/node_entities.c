/* node_entities.c — the entity picture's and the tasks' MQTT side (docs/ENTITIES.md "Over
 * MQTT", docs/TASKS.md "MQTT"): a subscription made with the user property kz-snapshot gets
 * every current entity its filter matches, and on an agent's inbox its open tasks, each as a
 * retained-like PUBLISH (retain set, user property kz-snapshot = 1) with its label, through
 * the session's delivery (the decision point decides each); task records, once durable, go
 * to the subscribers of kz/task/<id> and of the agent's inbox; PUBLISHes on the tasks'
 * topics go to the task service. */
#include "node/node_entities.h"
#include "base/kz_log.h"
#include "mqtt/mqtt_broker.h"
#include "mqtt/mqtt_msg.h"
#include "node/node_config.h"
#include "services/entity/entity_service.h"
#include "services/task/task_service.h"
#include "store/store.h"

#include <string.h>

/* The PUBLISH properties of a snapshot message: user property kz-snapshot = 1. */
static const uint8_t SNAPSHOT_PROPS[] = { 0x26, 0, 11, 'k', 'z', '-', 's', 'n', 'a', 'p', 's', 'h', 'o', 't', 0, 1, '1' };

static struct {
	struct entity_service *e;
	struct task_service *t;
} node_svc;

static void deliver_one(void *ctx, const char *topic, const uint8_t *json, size_t n, const char *label)
{
	struct mqtt_sub *sub = ctx;
	struct mqtt_msg *m = mqtt_msg_new_labelled((const uint8_t *)topic, (uint32_t)strlen(topic), json, (uint32_t)n,
						   SNAPSHOT_PROPS, sizeof SNAPSHOT_PROPS, (const uint8_t *)label,
						   (uint32_t)strlen(label), NULL);
	if (!m)
		return;
	m->qos = 1;
	mqtt_session_deliver(sub->session, m, sub->qos < 1 ? sub->qos : 1, true, sub->sub_id);
	mqtt_msg_unref(m);
}

static void snapshot(void *ctx, struct mqtt_sub *sub)
{
	(void)ctx;
	if (node_svc.e)
		(void)entity_service_snapshot(node_svc.e, sub->filter, sub->filter_len, deliver_one, sub);
	if (node_svc.t)
		task_service_snapshot(node_svc.t, sub->filter, sub->filter_len, deliver_one, sub);
}

static const char *service_publish(void *ctx, const char *identity, const uint8_t *topic, size_t topic_len,
				   const uint8_t *p, size_t n, const char *label, uint8_t *rc)
{
	return task_service_publish(ctx, identity, topic, topic_len, p, n, label, rc);
}

void node_entities_attach(struct mqtt_broker *b, struct entity_service *e, struct task_service *t)
{
	node_svc.e = e;
	node_svc.t = t;
	b->sub_snapshot = e || t ? snapshot : NULL;
	b->sub_snapshot_ctx = NULL;
	b->service_ctx = t;
	b->service_publish = t ? service_publish : NULL;
}

/* A task record, durable: to the subscribers of topic (kz/task/<id> or the agent's inbox). */
static void task_deliver(void *ctx, const char *topic, const uint8_t *rec, size_t n)
{
	struct kz_record r;
	const char *why;
	if (kz_record_decode(rec, n, &r, &why))
		return;
	struct mqtt_msg *m = mqtt_msg_new_labelled((const uint8_t *)topic, (uint32_t)strlen(topic), r.payload.p,
						   r.payload.len, NULL, 0, r.label.p, r.label.len, NULL);
	if (!m)
		return;
	m->qos = 1;
	(void)mqtt_broker_inject(ctx, 0, m);
	mqtt_msg_unref(m);
}

int node_tasks_open(struct mqtt_broker *b, const struct node_config *cfg, struct task_service **out, char *why,
		    size_t why_len)
{
	char identity[sizeof cfg->trust_domain + sizeof cfg->org + sizeof cfg->node_id + 32];
	snprintf(identity, sizeof identity, "spiffe://%s/%s/node/%s", cfg->trust_domain, cfg->org, cfg->node_id);
	struct task_service_config tc = { .store = b->store, .policy = &b->policy, .node_id = cfg->node_id,
					  .node_identity = identity, .max_tasks = cfg->task_max_tasks,
					  .max_agents = cfg->task_max_agents, .max_kinds = cfg->task_max_kinds,
					  .ended_keep_ms = cfg->task_ended_keep_ms, .max_page = cfg->task_max_page,
					  .deliver = task_deliver, .deliver_ctx = b };
	int rc = task_service_open(&tc, out, why, why_len);
	if (!rc) {
		struct task_service_stats st;
		task_service_stats(*out, &st);
		kz_info("tasks: %llu from the log, %llu open; %llu agents with kinds", (unsigned long long)st.tasks,
			(unsigned long long)st.open, (unsigned long long)st.agents);
	}
	return rc;
}
