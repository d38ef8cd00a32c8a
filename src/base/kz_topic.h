/* kz_topic.h — MQTT topic-filter matching (MQTT 5.0 §4.7), shared by the broker and by the
 * store's per-topic retention rules. */
#ifndef KZ_TOPIC_H
#define KZ_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reserved topics of the node's services ('$' first: clients cannot write them, and
 * wildcards at the start do not match them). TAXII: one record per STIX object version on
 * $taxii/<collection>/<type>/<uuid>/<version µs>, a deletion on $taxii-del/... */
#define KZ_TOPIC_TAXII "$taxii"
#define KZ_TOPIC_TAXII_DEL "$taxii-del"

/* True when filter matches topic, including the rule that a filter starting with a wildcard
 * does not match a topic starting with '$' (§4.7.2). */
bool kz_topic_match(const uint8_t *filter, size_t flen, const uint8_t *topic, size_t tlen);

/* Does every topic that filter f matches also match filter r (MQTT 5.0 §4.7)? */
bool kz_filter_covers(const char *r, size_t rn, const char *f, size_t fn);

/* A name that is also safe as one topic level and in a URL path: 1..max bytes of
 * [A-Za-z0-9._:@~-] (entity ids and aliases, task ids and kinds). */
bool kz_name_valid(const char *s, size_t n, size_t max);

/* Is name one of the comma-separated items of list ("observe,goto")? */
bool kz_list_has(const char *list, const char *name);

#endif
