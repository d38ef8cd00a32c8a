/* mqtt_record.c — MQTT messages to and from records. A record carries protocol-neutral
 * attributes (store.h, docs/STORE.md "Attributes"); this is where MQTT maps the PUBLISH
 * properties it forwards (MQTT 5.0 §3.3.2.3) to them and back:
 *
 *   Payload Format Indicator 1  <->  KZ_RATTR_UTF8_PAYLOAD
 *   Content Type                <->  the record's content_type field
 *   Response Topic              <->  KZ_RATTR_RESPONSE_TOPIC
 *   Correlation Data            <->  KZ_RATTR_CORRELATION
 *   User Property (in order)    <->  KZ_RATTR_USER (in order)
 *
 * Rebuilt, the properties come in the order mqtt_client_forward_props writes them, so a
 * replayed message carries the same property block as the live delivery did. */
#include "mqtt/mqtt_internal.h"
#include "base/kz_err.h"
#include "base/kz_time.h"

#include <string.h>

/* The attributes of a forwarded property block, into attrs; its Content Type into *ctype. */
static int props_to_attrs(const uint8_t *p, size_t n, struct kz_buf *attrs, struct kz_bytes *ctype)
{
	size_t off = 0;
	uint8_t id;
	uint32_t num;
	struct mqtt_str a, b;
	int rc = KZ_OK;
	while (!rc && mqtt_prop_next(p, n, &off, &id, &num, &a, &b)) {
		switch (id) {
		case MQTT_PROP_PAYLOAD_FORMAT:
			if (num == 1)
				rc = kz_rec_attr_append(attrs, KZ_RATTR_UTF8_PAYLOAD, NULL, 0, NULL, 0);
			break;
		case MQTT_PROP_CONTENT_TYPE: *ctype = (struct kz_bytes){ a.p, a.len }; break;
		case MQTT_PROP_RESPONSE_TOPIC: rc = kz_rec_attr_append(attrs, KZ_RATTR_RESPONSE_TOPIC, NULL, 0, a.p, a.len); break;
		case MQTT_PROP_CORRELATION_DATA: rc = kz_rec_attr_append(attrs, KZ_RATTR_CORRELATION, NULL, 0, a.p, a.len); break;
		case MQTT_PROP_USER_PROPERTY:
			/* kz-origin is the record's own origin, added again when it is delivered */
			if (!mqtt_user_key_is_origin(a.p, a.len))
				rc = kz_rec_attr_append(attrs, KZ_RATTR_USER, a.p, a.len, b.p, b.len);
			break;
		default: break; /* not forwarded, so never in a message's block */
		}
	}
	return rc;
}

int mqtt_record_encode(const struct mqtt_broker *b, const struct mqtt_msg *m, const char *origin_id,
		       struct kz_buf *out)
{
	struct kz_record r = { .qos = m->qos, .retain = m->retain, .precedence = KZ_PREC_ROUTINE };
	r.time_ns = kz_now_wall_ns();
	kz_uuidv7(r.id, r.time_ns / 1000000u);
	if (m->has_expiry)
		r.expiry_ns = r.time_ns + (uint64_t)m->expiry_s * 1000000000u;
	r.topic = (struct kz_bytes){ m->topic, m->topic_len };
	r.origin_node = (struct kz_bytes){ (const uint8_t *)b->node_id, (uint32_t)strlen(b->node_id) };
	r.origin_id = (struct kz_bytes){ (const uint8_t *)origin_id, origin_id ? (uint32_t)strlen(origin_id) : 0 };
	r.payload = (struct kz_bytes){ m->payload, m->payload_len };
	r.label = (struct kz_bytes){ m->label, m->label_len };
	struct kz_buf attrs;
	kz_buf_init(&attrs, 0);
	int rc = m->props_len ? props_to_attrs(m->props, m->props_len, &attrs, &r.content_type) : KZ_OK;
	r.attrs = (struct kz_bytes){ kz_buf_head(&attrs), (uint32_t)attrs.len };
	if (!rc)
		rc = kz_record_encode(&r, out);
	kz_buf_cleanup(&attrs);
	return rc;
}

/* The forwarded property block of a record, in mqtt_client_forward_props's order (kz-origin,
 * when wanted, last). */
static int attrs_to_props(const struct kz_record *r, struct kz_buf *props, bool origin)
{
	struct kz_rec_attr a;
	size_t off = 0;
	bool utf8 = false;
	while (kz_rec_attr_next(r, &off, &a))
		utf8 |= a.kind == KZ_RATTR_UTF8_PAYLOAD;
	int rc = utf8 ? mqtt_prop_append_byte(props, MQTT_PROP_PAYLOAD_FORMAT, 1) : KZ_OK;
	struct kz_bytes ct = kz_record_content_type(r);
	if (!rc && ct.len)
		rc = mqtt_prop_append_str(props, MQTT_PROP_CONTENT_TYPE, ct.p, ct.len);
	static const uint8_t kinds[] = { KZ_RATTR_RESPONSE_TOPIC, KZ_RATTR_CORRELATION, KZ_RATTR_USER };
	static const uint8_t ids[] = { MQTT_PROP_RESPONSE_TOPIC, MQTT_PROP_CORRELATION_DATA, 0 };
	for (size_t k = 0; k < sizeof kinds && !rc; k++) {
		off = 0;
		while (!rc && kz_rec_attr_next(r, &off, &a)) {
			if (a.kind != kinds[k])
				continue;
			if (a.name.len > 65535 || a.value.len > 65535)
				continue; /* not an MQTT string: another protocol's attribute */
			struct mqtt_str v = { a.value.p, a.value.len };
			rc = ids[k] ? mqtt_prop_append_str(props, ids[k], v.p, v.len)
				    : mqtt_prop_append_pair(props, (struct mqtt_str){ a.name.p, a.name.len }, v);
		}
	}
	if (!rc && origin && r->origin_id.len && r->origin_id.len <= 65535)
		rc = mqtt_prop_append_pair(props, MQTT_ORIGIN_KEY,
					   (struct mqtt_str){ r->origin_id.p, r->origin_id.len });
	return rc;
}

struct mqtt_msg *mqtt_msg_from_record(const struct mqtt_broker *b, const struct kz_record *r)
{
	struct kz_buf props;
	kz_buf_init(&props, 0);
	struct mqtt_msg *m = NULL;
	if (attrs_to_props(r, &props, b && b->lim.origin_property) == KZ_OK)
		m = mqtt_msg_new_labelled(r->topic.p, r->topic.len, r->payload.p, r->payload.len, kz_buf_head(&props),
					  (uint32_t)props.len, r->label.p, r->label.len, NULL);
	kz_buf_cleanup(&props);
	if (m) {
		m->qos = r->qos;
		m->retain = r->retain;
	}
	return m;
}
