/* node_tak.h — the TAK server endpoint (node_tak.c, docs/ADAPTERS.md "TAK"). */
#ifndef KZ_NODE_TAK_H
#define KZ_NODE_TAK_H

#include "net/net.h"

#include <stddef.h>

struct kz_buf;
struct mqtt_broker;
struct node_config;
struct entity_service;
struct node_tak;

/* Binds tak.listen (*out NULL when it is empty). 0, or -1 with why. */
int node_tak_open(const struct node_config *cfg, struct mqtt_broker *b, SSL_CTX *ctx, struct entity_service *es,
		  struct node_tak **out, char *why, size_t why_len);
/* The endpoint as a protocol of the server's workers (takes its socket). */
void node_tak_proto(struct node_tak *t, struct net_proto *out);
/* After the workers ended. NULL: nothing. */
void node_tak_close(struct node_tak *t);
void node_tak_metrics(struct node_tak *t, struct kz_buf *b);

#endif
