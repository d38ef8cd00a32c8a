/* node_entities.c — the entity picture's MQTT side (docs/ENTITIES.md "Over MQTT"): a
 * subscription made with the user property kz-snapshot gets every current entity its filter
 * matches, as a retained-like PUBLISH (retain set, user property kz-snapshot = 1) with the
 * entity's label, through the session's delivery (the decision point decides each). */
#include "node/node_entities.h"
#include "mqtt/mqtt_broker.h"
#include "mqtt/mqtt_msg.h"
#include "services/entity/entity_service.h"

#include <string.h>

/* The PUBLISH properties of a snapshot message: user property kz-snapshot = 1. */
static const uint8_t SNAPSHOT_PROPS[] = { 0x26, 0, 11, 'k', 'z', '-', 's', 'n', 'a', 'p', 's', 'h', 'o', 't', 0, 1, '1' };

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
	(void)entity_service_snapshot(ctx, sub->filter, sub->filter_len, deliver_one, sub);
}

void node_entities_attach(struct mqtt_broker *b, struct entity_service *s)
{
	b->sub_snapshot = s ? snapshot : NULL;
	b->sub_snapshot_ctx = s;
}
