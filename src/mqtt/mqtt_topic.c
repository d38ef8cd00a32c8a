/* mqtt_topic.c — topic names, filters, shared subscriptions and matching. */
#include "mqtt/mqtt_topic.h"
#include "mqtt/mqtt_codec.h"

#include <string.h>

static int common_check(const uint8_t *p, size_t n, const struct mqtt_topic_limits *lim,
			const char **why)
{
	if (n == 0) {
		*why = "topic is empty";
		return -1;
	}
	if (lim && lim->max_len && n > lim->max_len) {
		*why = "topic longer than the configured maximum";
		return -1;
	}
	if (lim && lim->max_levels) {
		uint32_t levels = 1;
		for (size_t i = 0; i < n; i++)
			levels += p[i] == '/';
		if (levels > lim->max_levels) {
			*why = "topic has more levels than the configured maximum";
			return -1;
		}
	}
	return 0;
}

int mqtt_topic_name_check(const uint8_t *p, size_t n, const struct mqtt_topic_limits *lim,
			  const char **why)
{
	if (common_check(p, n, lim, why))
		return MQTT_RC_TOPIC_INVALID;
	if (memchr(p, '+', n) || memchr(p, '#', n)) {
		*why = "topic name contains a wildcard";
		return MQTT_RC_TOPIC_INVALID;
	}
	return 0;
}

int mqtt_topic_filter_check(const uint8_t *p, size_t n, const struct mqtt_topic_limits *lim,
			    const char **why)
{
	if (common_check(p, n, lim, why))
		return MQTT_RC_FILTER_INVALID;
	for (size_t i = 0; i < n; i++) {
		bool level_start = i == 0 || p[i - 1] == '/';
		bool level_end = i + 1 == n || p[i + 1] == '/';
		if (p[i] == '+' && !(level_start && level_end)) {
			*why = "'+' must occupy a whole level";
			return MQTT_RC_FILTER_INVALID;
		}
		if (p[i] == '#' && !(level_start && i + 1 == n)) {
			*why = "'#' must be the last level and alone in it";
			return MQTT_RC_FILTER_INVALID;
		}
	}
	return 0;
}

int mqtt_topic_share_split(const uint8_t *p, size_t n, const uint8_t **group, size_t *group_len,
			   const uint8_t **filter, size_t *filter_len, const char **why)
{
	static const char prefix[] = "$share/";
	size_t pl = sizeof prefix - 1;
	if (n < pl || memcmp(p, prefix, pl) != 0)
		return 0;
	const uint8_t *g = p + pl;
	const uint8_t *slash = memchr(g, '/', n - pl);
	if (!slash) {
		*why = "shared subscription has no topic filter";
		return -1;
	}
	size_t gl = (size_t)(slash - g);
	if (gl == 0) {
		*why = "shared subscription group name is empty";
		return -1;
	}
	if (memchr(g, '+', gl) || memchr(g, '#', gl)) {
		*why = "shared subscription group name contains a wildcard";
		return -1;
	}
	*group = g;
	*group_len = gl;
	*filter = slash + 1;
	*filter_len = n - pl - gl - 1;
	if (*filter_len == 0) {
		*why = "shared subscription has an empty topic filter";
		return -1;
	}
	return 1;
}
