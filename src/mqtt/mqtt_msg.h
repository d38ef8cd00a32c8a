/* mqtt_msg.h — an application message in flight: immutable after creation, reference
 * counted, shared by every subscriber, the retained store and other workers. */
#ifndef MQTT_MSG_H
#define MQTT_MSG_H

#include "trust/policy.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct mqtt_msg {
	atomic_uint refs;
	uint8_t qos;
	bool retain;
	bool has_expiry;
	uint32_t expiry_s;    /* Message Expiry Interval as received */
	uint64_t created_ms;  /* monotonic ms at acceptance */
	uint64_t origin;      /* session uid of the publisher, for No Local; 0 = none */
	_Atomic uint64_t seq; /* its record's sequence number; MQTT_SEQ_* until known */
	uint32_t topic_len, payload_len, props_len;
	uint8_t *topic;       /* points into data[] */
	uint8_t *payload;     /* points into data[] */
	uint8_t *props;       /* encoded forwarded properties (MQTT 5.0 §3.3.2.3) */
	uint8_t *label;       /* canonical label text (docs/POLICY.md); NULL when unlabelled */
	uint32_t label_len;
	uint64_t label_hash;  /* kz_hash of the text: the key of the decision caches */
	const struct kz_label *lab; /* compiled at acceptance (points into data[]); NULL when not */
	_Alignas(8) uint8_t data[];
};

#define MQTT_SEQ_PENDING 0          /* on its way to the store */
#define MQTT_SEQ_NONE UINT64_MAX     /* not stored (the default) */

/* Copies topic, payload and props into one allocation with refs = 1. NULL on ENOMEM. */
struct mqtt_msg *mqtt_msg_new(const uint8_t *topic, uint32_t topic_len, const uint8_t *payload,
			      uint32_t payload_len, const uint8_t *props, uint32_t props_len);
static inline struct mqtt_msg *mqtt_msg_ref(struct mqtt_msg *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}
/* The same with a label: its canonical text and, when known, its compiled form (copied). */
struct mqtt_msg *mqtt_msg_new_labelled(const uint8_t *topic, uint32_t topic_len, const uint8_t *payload,
				       uint32_t payload_len, const uint8_t *props, uint32_t props_len,
				       const uint8_t *label, uint32_t label_len, const struct kz_label *lab);
void mqtt_msg_unref(struct mqtt_msg *m);
/* True when the message's expiry interval has passed at now_ms. *remaining_s gets what is
 * left (to forward in the Message Expiry Interval property). */
bool mqtt_msg_expired(const struct mqtt_msg *m, uint64_t now_ms, uint32_t *remaining_s);
/* Heap bytes the message accounts for (for queue byte caps). */
static inline uint64_t mqtt_msg_size(const struct mqtt_msg *m)
{
	return sizeof *m + m->topic_len + m->payload_len + m->props_len + m->label_len +
	       (m->lab ? sizeof *m->lab : 0);
}

#endif
