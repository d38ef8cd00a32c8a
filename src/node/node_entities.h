/* node_entities.h — the entity picture's MQTT snapshot (node_entities.c). */
#ifndef KZ_NODE_ENTITIES_H
#define KZ_NODE_ENTITIES_H

struct mqtt_broker;
struct entity_service;

/* Subscriptions with kz-snapshot get s's picture first (s NULL: none). */
void node_entities_attach(struct mqtt_broker *b, struct entity_service *s);

#endif
