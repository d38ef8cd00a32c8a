/* mqtt_msg.c — reference-counted application messages. */
#include "mqtt/mqtt_msg.h"

#include "base/kz_hash.h"

#include <stdlib.h>
#include <string.h>

struct mqtt_msg *mqtt_msg_new(const uint8_t *topic, uint32_t topic_len, const uint8_t *payload,
			      uint32_t payload_len, const uint8_t *props, uint32_t props_len)
{
	return mqtt_msg_new_labelled(topic, topic_len, payload, payload_len, props, props_len, NULL, 0, NULL);
}

struct mqtt_msg *mqtt_msg_new_labelled(const uint8_t *topic, uint32_t topic_len, const uint8_t *payload,
				       uint32_t payload_len, const uint8_t *props, uint32_t props_len,
				       const uint8_t *label, uint32_t label_len, const struct kz_label *lab)
{
	size_t lab_size = lab ? sizeof *lab : 0;
	struct mqtt_msg *m = malloc(sizeof *m + lab_size + (size_t)topic_len + payload_len + props_len + label_len);
	if (!m)
		return NULL;
	memset(m, 0, sizeof *m);
	atomic_init(&m->refs, 1);
	atomic_init(&m->seq, MQTT_SEQ_NONE);
	if (lab) { /* first, so that it is aligned */
		memcpy(m->data, lab, sizeof *lab);
		m->lab = (const struct kz_label *)(void *)m->data;
	}
	m->topic = m->data + lab_size;
	m->payload = m->topic + topic_len;
	m->props = m->payload + payload_len;
	m->topic_len = topic_len;
	m->payload_len = payload_len;
	m->props_len = props_len;
	memcpy(m->topic, topic, topic_len);
	if (payload_len)
		memcpy(m->payload, payload, payload_len);
	if (props_len)
		memcpy(m->props, props, props_len);
	if (label_len) {
		m->label = m->props + props_len;
		m->label_len = label_len;
		memcpy(m->label, label, label_len);
		m->label_hash = lab ? lab->hash : kz_hash(label, label_len);
	}
	return m;
}

void mqtt_msg_unref(struct mqtt_msg *m)
{
	if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
		free(m);
}

bool mqtt_msg_expired(const struct mqtt_msg *m, uint64_t now_ms, uint32_t *remaining_s)
{
	if (!m->has_expiry) {
		*remaining_s = 0;
		return false;
	}
	uint64_t age_s = (now_ms - m->created_ms) / 1000u;
	if (age_s >= m->expiry_s)
		return true;
	*remaining_s = m->expiry_s - (uint32_t)age_s;
	return false;
}
