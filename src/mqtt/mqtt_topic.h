/* mqtt_topic.h — topic name and filter rules (MQTT 5.0 §4.7, §4.8.2). */
#ifndef MQTT_TOPIC_H
#define MQTT_TOPIC_H

#include "base/kz_topic.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mqtt_topic_limits {
	uint32_t max_len;    /* bytes */
	uint32_t max_levels; /* '/'-separated levels */
};

/* Topic Name for PUBLISH: non-empty, no '+'/'#', within limits. Returns 0 or a reason code
 * (0x90 Topic Name invalid) and *why. */
int mqtt_topic_name_check(const uint8_t *p, size_t n, const struct mqtt_topic_limits *lim,
			  const char **why);
/* Topic Filter for SUBSCRIBE: '#' only last and alone in its level, '+' alone in its level.
 * Returns 0 or 0x8F (Topic Filter invalid) and *why. Does not handle $share (see below). */
int mqtt_topic_filter_check(const uint8_t *p, size_t n, const struct mqtt_topic_limits *lim,
			    const char **why);

/* Splits "$share/<group>/<filter>" (MQTT 5.0 §4.8.2). Returns 1 when it is a shared
 * subscription (group and filter set, borrowed from p), 0 when it is not, or a negative
 * value with *why when malformed (empty group, wildcard in the group, missing filter). */
int mqtt_topic_share_split(const uint8_t *p, size_t n, const uint8_t **group, size_t *group_len,
			   const uint8_t **filter, size_t *filter_len, const char **why);

#endif
