/* node_adapters.h — the node's sensor adapters (node_adapters.c, docs/ADAPTERS.md). */
#ifndef KZ_NODE_ADAPTERS_H
#define KZ_NODE_ADAPTERS_H

#include <stddef.h>
#include <stdint.h>

struct kz_buf;
struct mqtt_broker;
struct node_config;
struct node_adapters;

/* Starts the adapters cfg configures (*out NULL when none is). 0, or -1 with why (a listener
 * that cannot be opened). */
int node_adapters_open(struct mqtt_broker *b, const struct node_config *cfg, struct node_adapters **out, char *why,
		       size_t why_len);
/* Stops them (before the store closes); NULL: nothing. */
void node_adapters_close(struct node_adapters *a);
/* An entity update (JSON) as a record on kz/entity/<id>, written by identity with label_text
 * (empty: the policy's default for the topic), if the policy lets identity publish there and
 * give that label; delivered to MQTT subscribers once durable (any thread). 0, or -1 with
 * why. For the adapters and the TAK endpoint. */
int node_entity_write(struct mqtt_broker *b, const char *node_id, const char *identity, const char *label_text,
		      const char *id, const uint8_t *json, size_t n, const char **why);
/* The same on any topic, with its content type; canon receives the record's label (canonical
 * text, "" without policy). */
int node_record_write(struct mqtt_broker *b, const char *node_id, const char *identity, const char *label_text,
		      const char *topic, const char *content_type, const uint8_t *payload, size_t n,
		      char canon[1025], const char **why);
/* Frees the calling thread's encoding buffer of node_record_write (before the thread ends). */
void node_record_write_end(void);
/* Their counters in Prometheus' text format; NULL: nothing. */
void node_adapters_metrics(struct node_adapters *a, struct kz_buf *b);

#endif
