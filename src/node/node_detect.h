/* node_detect.h — the node's detection service (docs/DETECTION.md "In the node"). */
#ifndef NODE_DETECT_H
#define NODE_DETECT_H

#include <stddef.h>

struct kz_buf;
struct kz_http;
struct mqtt_broker;
struct node_config;
struct node_detect;
struct taxii;

/* Starts it when cfg enables it (*out NULL otherwise): indicators from the log's TAXII
 * records (the whole log, then as records become durable), then its thread. t: the TAXII
 * server (NULL without HTTPS: no indicators from TAXII, no sightings stored there). 0, or -1
 * with why. */
int node_detect_open(struct mqtt_broker *b, struct taxii *t, const struct node_config *cfg, struct node_detect **out,
		     char *why, size_t why_len);
/* New records are durable: read them now. Any thread. */
void node_detect_kick(void);
/* Stops it (before the store closes); NULL: nothing. */
void node_detect_close(struct node_detect *d);
/* GET /api/v1/detect/status. */
int node_detect_routes(struct node_detect *d, struct kz_http *h);
/* Its counters and gauges in Prometheus' text format; NULL: nothing. */
void node_detect_metrics(struct node_detect *d, struct kz_buf *b);

#endif
