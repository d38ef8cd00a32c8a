/* node_entities.h — the MQTT side of the entity picture and of tasks (node_entities.c). */
#ifndef KZ_NODE_ENTITIES_H
#define KZ_NODE_ENTITIES_H

#include <stddef.h>

struct mqtt_broker;
struct entity_service;
struct task_service;
struct node_config;

/* Subscriptions with kz-snapshot get e's picture and, on an agent's inbox, t's open tasks
 * first; PUBLISHes on the tasks' topics go to t (either NULL: none). */
void node_entities_attach(struct mqtt_broker *b, struct entity_service *e, struct task_service *t);

/* The task service of the node, delivering its records through b. */
int node_tasks_open(struct mqtt_broker *b, const struct node_config *cfg, struct task_service **out, char *why,
		    size_t why_len);

#endif
