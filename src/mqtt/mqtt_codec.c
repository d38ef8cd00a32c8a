/* mqtt_codec.c — MQTT 3.1.1 / 5.0 wire format. Property handling is driven by one table. */
#include "mqtt/mqtt_codec.h"
#include "base/kz_err.h"
#include "base/kz_utf8.h"

#include <stddef.h>
#include <string.h>

enum prop_type { P_BYTE, P_U16, P_U32, P_VARINT, P_STR, P_BIN, P_PAIR };

#define PK(t) (1u << (t))
#define PK_WILL 1u /* bit 0: the Will Properties of a CONNECT */

struct prop_def {
	uint8_t id;
	uint8_t type;
	uint8_t is_multi; /* may appear more than once */
	uint8_t is_bool;  /* value must be 0 or 1 */
	uint8_t nonzero;  /* zero is a protocol error */
	uint16_t packets; /* PK(type) mask where allowed */
	uint16_t offset;  /* into struct mqtt_props */
};

#define OFF(f) ((uint16_t)offsetof(struct mqtt_props, f))
#define ALL_PK 0xFFFEu

/* MQTT 5.0 §2.2.2.2, Table 2-4. */
static const struct prop_def prop_defs[] = {
	{ MQTT_PROP_PAYLOAD_FORMAT, P_BYTE, 0, 1, 0, PK(MQTT_PUBLISH) | PK_WILL, OFF(payload_format) },
	{ MQTT_PROP_MESSAGE_EXPIRY, P_U32, 0, 0, 0, PK(MQTT_PUBLISH) | PK_WILL, OFF(message_expiry) },
	{ MQTT_PROP_CONTENT_TYPE, P_STR, 0, 0, 0, PK(MQTT_PUBLISH) | PK_WILL, OFF(content_type) },
	{ MQTT_PROP_RESPONSE_TOPIC, P_STR, 0, 0, 0, PK(MQTT_PUBLISH) | PK_WILL, OFF(response_topic) },
	{ MQTT_PROP_CORRELATION_DATA, P_BIN, 0, 0, 0, PK(MQTT_PUBLISH) | PK_WILL, OFF(correlation_data) },
	{ MQTT_PROP_SUBSCRIPTION_ID, P_VARINT, 1, 0, 1, PK(MQTT_PUBLISH) | PK(MQTT_SUBSCRIBE), OFF(sub_ids) },
	{ MQTT_PROP_SESSION_EXPIRY, P_U32, 0, 0, 0, PK(MQTT_CONNECT) | PK(MQTT_CONNACK) | PK(MQTT_DISCONNECT), OFF(session_expiry) },
	{ MQTT_PROP_ASSIGNED_CLIENT_ID, P_STR, 0, 0, 0, PK(MQTT_CONNACK), OFF(assigned_client_id) },
	{ MQTT_PROP_SERVER_KEEP_ALIVE, P_U16, 0, 0, 0, PK(MQTT_CONNACK), OFF(server_keep_alive) },
	{ MQTT_PROP_AUTH_METHOD, P_STR, 0, 0, 0, PK(MQTT_CONNECT) | PK(MQTT_CONNACK) | PK(MQTT_AUTH), OFF(auth_method) },
	{ MQTT_PROP_AUTH_DATA, P_BIN, 0, 0, 0, PK(MQTT_CONNECT) | PK(MQTT_CONNACK) | PK(MQTT_AUTH), OFF(auth_data) },
	{ MQTT_PROP_REQUEST_PROBLEM_INFO, P_BYTE, 0, 1, 0, PK(MQTT_CONNECT), OFF(request_problem_info) },
	{ MQTT_PROP_WILL_DELAY, P_U32, 0, 0, 0, PK_WILL, OFF(will_delay) },
	{ MQTT_PROP_REQUEST_RESPONSE_INFO, P_BYTE, 0, 1, 0, PK(MQTT_CONNECT), OFF(request_response_info) },
	{ MQTT_PROP_RESPONSE_INFO, P_STR, 0, 0, 0, PK(MQTT_CONNACK), OFF(response_info) },
	{ MQTT_PROP_SERVER_REFERENCE, P_STR, 0, 0, 0, PK(MQTT_CONNACK) | PK(MQTT_DISCONNECT), OFF(server_reference) },
	{ MQTT_PROP_REASON_STRING, P_STR, 0, 0, 0,
	  PK(MQTT_CONNACK) | PK(MQTT_PUBACK) | PK(MQTT_PUBREC) | PK(MQTT_PUBREL) | PK(MQTT_PUBCOMP) |
	  PK(MQTT_SUBACK) | PK(MQTT_UNSUBACK) | PK(MQTT_DISCONNECT) | PK(MQTT_AUTH), OFF(reason_string) },
	{ MQTT_PROP_RECEIVE_MAX, P_U16, 0, 0, 1, PK(MQTT_CONNECT) | PK(MQTT_CONNACK), OFF(receive_max) },
	{ MQTT_PROP_TOPIC_ALIAS_MAX, P_U16, 0, 0, 0, PK(MQTT_CONNECT) | PK(MQTT_CONNACK), OFF(topic_alias_max) },
	{ MQTT_PROP_TOPIC_ALIAS, P_U16, 0, 0, 1, PK(MQTT_PUBLISH), OFF(topic_alias) },
	{ MQTT_PROP_MAX_QOS, P_BYTE, 0, 1, 0, PK(MQTT_CONNACK), OFF(max_qos) },
	{ MQTT_PROP_RETAIN_AVAILABLE, P_BYTE, 0, 1, 0, PK(MQTT_CONNACK), OFF(retain_available) },
	{ MQTT_PROP_USER_PROPERTY, P_PAIR, 1, 0, 0, ALL_PK | PK_WILL, OFF(n_user) },
	{ MQTT_PROP_MAX_PACKET_SIZE, P_U32, 0, 0, 1, PK(MQTT_CONNECT) | PK(MQTT_CONNACK), OFF(max_packet_size) },
	{ MQTT_PROP_WILDCARD_SUB_AVAILABLE, P_BYTE, 0, 1, 0, PK(MQTT_CONNACK), OFF(wildcard_sub_available) },
	{ MQTT_PROP_SUB_ID_AVAILABLE, P_BYTE, 0, 1, 0, PK(MQTT_CONNACK), OFF(sub_id_available) },
	{ MQTT_PROP_SHARED_SUB_AVAILABLE, P_BYTE, 0, 1, 0, PK(MQTT_CONNACK), OFF(shared_sub_available) },
};

static const struct prop_def *prop_find(uint8_t id)
{
	static const struct prop_def *by_id[64];
	static int built;
	if (!built) { /* idempotent and benign if two threads race: same values */
		for (size_t i = 0; i < KZ_ARRAY_LEN(prop_defs); i++)
			by_id[prop_defs[i].id] = &prop_defs[i];
		built = 1;
	}
	return id < 64 ? by_id[id] : NULL;
}

/* ---------- reading ---------- */

struct rd {
	const uint8_t *p;
	size_t n, i;
};

static int rd_u8(struct rd *r, uint8_t *v)
{
	if (r->n - r->i < 1)
		return KZ_EMALFORMED;
	*v = r->p[r->i++];
	return KZ_OK;
}

static int rd_u16(struct rd *r, uint16_t *v)
{
	if (r->n - r->i < 2)
		return KZ_EMALFORMED;
	*v = (uint16_t)((r->p[r->i] << 8) | r->p[r->i + 1]);
	r->i += 2;
	return KZ_OK;
}

static int rd_u32(struct rd *r, uint32_t *v)
{
	if (r->n - r->i < 4)
		return KZ_EMALFORMED;
	const uint8_t *q = r->p + r->i;
	*v = ((uint32_t)q[0] << 24) | ((uint32_t)q[1] << 16) | ((uint32_t)q[2] << 8) | q[3];
	r->i += 4;
	return KZ_OK;
}

/* Variable Byte Integer; rejects more than 4 bytes and non-minimal forms (§1.5.5). */
static int varint_decode(const uint8_t *p, size_t n, uint32_t *v, size_t *used)
{
	uint32_t val = 0;
	for (size_t k = 0; k < 4; k++) {
		if (k >= n)
			return KZ_EAGAIN;
		val |= (uint32_t)(p[k] & 0x7F) << (7 * k);
		if (!(p[k] & 0x80)) {
			if (k > 0 && p[k] == 0)
				return KZ_EMALFORMED;
			*v = val;
			*used = k + 1;
			return KZ_OK;
		}
	}
	return KZ_EMALFORMED;
}

static int rd_varint(struct rd *r, uint32_t *v)
{
	size_t used;
	int rc = varint_decode(r->p + r->i, r->n - r->i, v, &used);
	if (rc)
		return KZ_EMALFORMED;
	r->i += used;
	return KZ_OK;
}

static int rd_bin(struct rd *r, struct mqtt_str *s)
{
	uint16_t len;
	if (rd_u16(r, &len) || r->n - r->i < len)
		return KZ_EMALFORMED;
	s->p = r->p + r->i;
	s->len = len;
	r->i += len;
	return KZ_OK;
}

static int rd_str(struct rd *r, struct mqtt_str *s)
{
	if (rd_bin(r, s))
		return KZ_EMALFORMED;
	if (!kz_utf8_valid(s->p, s->len, true))
		return KZ_EMALFORMED;
	return KZ_OK;
}

size_t mqtt_varint_size(uint32_t v)
{
	return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

size_t mqtt_varint_put(uint8_t *p, uint32_t v)
{
	size_t k = 0;
	do {
		uint8_t b = v & 0x7F;
		v >>= 7;
		p[k++] = v ? (uint8_t)(b | 0x80) : b;
	} while (v);
	return k;
}

int mqtt_frame(const uint8_t *p, size_t n, uint32_t max_packet, size_t *total)
{
	if (n < 2)
		return KZ_EAGAIN;
	uint32_t rem;
	size_t used;
	int rc = varint_decode(p + 1, n - 1, &rem, &used);
	if (rc)
		return rc;
	uint64_t whole = 1 + (uint64_t)used + rem;
	if (max_packet && whole > max_packet)
		return KZ_ETOOBIG;
	if (n < whole)
		return KZ_EAGAIN;
	*total = (size_t)whole;
	return KZ_OK;
}

static int fail(struct mqtt_err *err, uint8_t reason, const char *why)
{
	err->reason = reason;
	err->why = why;
	return reason == MQTT_RC_MALFORMED ? KZ_EMALFORMED : KZ_EPROTO;
}

static int decode_props(struct rd *r, uint16_t pk_bit, struct mqtt_props *pr, struct mqtt_err *err)
{
	uint32_t len;
	if (rd_varint(r, &len) || r->n - r->i < len)
		return fail(err, MQTT_RC_MALFORMED, "property length exceeds packet");
	struct rd pr_r = { r->p + r->i, len, 0 };
	pr->raw.p = r->p + r->i;
	pr->raw.len = len;
	r->i += len;
	while (pr_r.i < pr_r.n) {
		uint32_t id;
		if (rd_varint(&pr_r, &id))
			return fail(err, MQTT_RC_MALFORMED, "bad property identifier");
		const struct prop_def *d = id < 64 ? prop_find((uint8_t)id) : NULL;
		if (!d || !(d->packets & pk_bit))
			return fail(err, MQTT_RC_MALFORMED, "property not valid for this packet");
		if ((pr->has & MQTT_HAS(id)) && !d->is_multi)
			return fail(err, MQTT_RC_PROTOCOL_ERROR, "property included more than once");
		pr->has |= MQTT_HAS(id);
		uint8_t *dst = (uint8_t *)pr + d->offset;
		uint32_t v = 0;
		int rc = KZ_OK;
		switch (d->type) {
		case P_BYTE: {
			uint8_t b;
			rc = rd_u8(&pr_r, &b);
			v = b;
			if (!rc)
				*dst = b;
			break;
		}
		case P_U16: {
			uint16_t h;
			rc = rd_u16(&pr_r, &h);
			v = h;
			if (!rc)
				memcpy(dst, &h, 2);
			break;
		}
		case P_U32:
			rc = rd_u32(&pr_r, &v);
			if (!rc)
				memcpy(dst, &v, 4);
			break;
		case P_VARINT: /* only Subscription Identifier */
			rc = rd_varint(&pr_r, &v);
			if (!rc && pr->n_sub_ids < MQTT_MAX_SUB_IDS)
				pr->sub_ids[pr->n_sub_ids++] = v;
			break;
		case P_STR:
			rc = rd_str(&pr_r, (struct mqtt_str *)(void *)dst);
			v = 1;
			break;
		case P_BIN:
			rc = rd_bin(&pr_r, (struct mqtt_str *)(void *)dst);
			v = 1;
			break;
		case P_PAIR: {
			struct mqtt_str k, val;
			rc = rd_str(&pr_r, &k);
			if (!rc)
				rc = rd_str(&pr_r, &val);
			pr->n_user++;
			v = 1;
			break;
		}
		}
		if (rc)
			return fail(err, MQTT_RC_MALFORMED, "property value malformed");
		if (d->is_bool && v > 1)
			return fail(err, MQTT_RC_PROTOCOL_ERROR, "property value must be 0 or 1");
		if (d->nonzero && v == 0)
			return fail(err, MQTT_RC_PROTOCOL_ERROR, "property value must not be 0");
	}
	return KZ_OK;
}

bool mqtt_user_next(const struct mqtt_props *pr, size_t *off, struct mqtt_str *key,
		    struct mqtt_str *val)
{
	struct rd r = { pr->raw.p, pr->raw.len, *off };
	while (r.i < r.n) {
		uint32_t id;
		if (rd_varint(&r, &id))
			return false;
		const struct prop_def *d = prop_find((uint8_t)id);
		if (!d)
			return false;
		struct mqtt_str s;
		uint32_t v32;
		uint16_t v16;
		uint8_t v8;
		switch (d->type) {
		case P_BYTE: (void)rd_u8(&r, &v8); break;
		case P_U16: (void)rd_u16(&r, &v16); break;
		case P_U32: (void)rd_u32(&r, &v32); break;
		case P_VARINT: (void)rd_varint(&r, &v32); break;
		case P_STR:
		case P_BIN: (void)rd_bin(&r, &s); break;
		case P_PAIR:
			if (rd_bin(&r, key) || rd_bin(&r, val))
				return false;
			*off = r.i;
			return true;
		}
	}
	*off = r.i;
	return false;
}

bool mqtt_prop_next(const uint8_t *p, size_t n, size_t *off, uint8_t *id, uint32_t *num, struct mqtt_str *a,
		    struct mqtt_str *b)
{
	struct rd r = { p, n, *off };
	uint32_t pid;
	if (r.i >= r.n || rd_varint(&r, &pid) || pid >= 64)
		return false;
	const struct prop_def *d = prop_find((uint8_t)pid);
	if (!d)
		return false;
	*num = 0;
	*a = *b = (struct mqtt_str){ 0 };
	uint16_t v16 = 0;
	uint8_t v8 = 0;
	int rc;
	switch (d->type) {
	case P_BYTE: rc = rd_u8(&r, &v8), *num = v8; break;
	case P_U16: rc = rd_u16(&r, &v16), *num = v16; break;
	case P_U32: rc = rd_u32(&r, num); break;
	case P_VARINT: rc = rd_varint(&r, num); break;
	case P_STR:
	case P_BIN: rc = rd_bin(&r, a); break;
	case P_PAIR: rc = rd_bin(&r, a) || rd_bin(&r, b); break;
	default: rc = -1;
	}
	if (rc)
		return false;
	*id = (uint8_t)pid;
	*off = r.i;
	return true;
}

static int decode_connect(struct rd *r, struct mqtt_packet *pkt, struct mqtt_err *err)
{
	struct mqtt_connect *c = &pkt->connect;
	if (rd_bin(r, &c->protocol_name) || rd_u8(r, &c->protocol_level))
		return fail(err, MQTT_RC_MALFORMED, "CONNECT variable header truncated");
	if (c->protocol_name.len != 4 || memcmp(c->protocol_name.p, "MQTT", 4) != 0)
		return fail(err, MQTT_RC_UNSUPPORTED_VERSION, "protocol name is not MQTT");
	if (c->protocol_level != MQTT_V311 && c->protocol_level != MQTT_V5)
		return fail(err, MQTT_RC_UNSUPPORTED_VERSION, "unsupported protocol level");
	uint8_t v5 = c->protocol_level == MQTT_V5;
	if (rd_u8(r, &c->flags) || rd_u16(r, &c->keep_alive))
		return fail(err, MQTT_RC_MALFORMED, "CONNECT variable header truncated");
	if (c->flags & 0x01)
		return fail(err, MQTT_RC_MALFORMED, "CONNECT reserved flag set");
	c->clean_start = c->flags & 0x02;
	c->has_will = c->flags & 0x04;
	c->will_qos = (c->flags >> 3) & 0x03;
	c->will_retain = c->flags & 0x20;
	c->has_password = c->flags & 0x40;
	c->has_username = c->flags & 0x80;
	if (!c->has_will && (c->will_qos || c->will_retain))
		return fail(err, MQTT_RC_MALFORMED, "will QoS/retain set without will flag");
	if (c->will_qos == 3)
		return fail(err, MQTT_RC_MALFORMED, "will QoS 3");
	if (!v5 && c->has_password && !c->has_username)
		return fail(err, MQTT_RC_MALFORMED, "password without user name");
	if (v5 && decode_props(r, PK(MQTT_CONNECT), &pkt->props, err))
		return KZ_EMALFORMED;
	if (rd_str(r, &c->client_id))
		return fail(err, MQTT_RC_CLIENT_ID_INVALID, "client identifier missing or not UTF-8");
	if (c->has_will) {
		if (v5 && decode_props(r, PK_WILL, &c->will_props, err))
			return KZ_EMALFORMED;
		if (rd_str(r, &c->will_topic) || rd_bin(r, &c->will_payload))
			return fail(err, MQTT_RC_MALFORMED, "will topic or payload malformed");
	}
	if (c->has_username && rd_str(r, &c->username))
		return fail(err, MQTT_RC_MALFORMED, "user name malformed");
	if (c->has_password && rd_bin(r, &c->password))
		return fail(err, MQTT_RC_MALFORMED, "password malformed");
	if (r->i != r->n)
		return fail(err, MQTT_RC_MALFORMED, "trailing bytes after CONNECT payload");
	return KZ_OK;
}

static int decode_publish(struct rd *r, uint8_t v5, struct mqtt_packet *pkt, struct mqtt_err *err)
{
	pkt->dup = pkt->flags & 0x08;
	pkt->qos = (pkt->flags >> 1) & 0x03;
	pkt->retain = pkt->flags & 0x01;
	if (pkt->qos == 3)
		return fail(err, MQTT_RC_MALFORMED, "PUBLISH with QoS 3");
	if (pkt->qos == 0 && pkt->dup)
		return fail(err, MQTT_RC_MALFORMED, "DUP set on a QoS 0 PUBLISH");
	if (rd_str(r, &pkt->topic))
		return fail(err, MQTT_RC_MALFORMED, "topic name malformed or not UTF-8");
	if (pkt->qos) {
		if (rd_u16(r, &pkt->packet_id))
			return fail(err, MQTT_RC_MALFORMED, "packet identifier missing");
		if (pkt->packet_id == 0)
			return fail(err, MQTT_RC_MALFORMED, "packet identifier 0");
	}
	if (v5 && decode_props(r, PK(MQTT_PUBLISH), &pkt->props, err))
		return KZ_EMALFORMED;
	pkt->payload.p = r->p + r->i;
	pkt->payload.len = (uint32_t)(r->n - r->i);
	r->i = r->n;
	return KZ_OK;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP (MQTT 5.0 §3.4–3.7). */
static int decode_ack(struct rd *r, uint8_t v5, struct mqtt_packet *pkt, struct mqtt_err *err)
{
	if (rd_u16(r, &pkt->packet_id))
		return fail(err, MQTT_RC_MALFORMED, "packet identifier missing");
	if (!v5) {
		if (r->i != r->n)
			return fail(err, MQTT_RC_MALFORMED, "acknowledgement longer than 2 bytes");
		return KZ_OK;
	}
	if (r->i < r->n && rd_u8(r, &pkt->reason))
		return fail(err, MQTT_RC_MALFORMED, "reason code missing");
	if (r->i < r->n && decode_props(r, PK(pkt->type), &pkt->props, err))
		return KZ_EMALFORMED;
	if (r->i != r->n)
		return fail(err, MQTT_RC_MALFORMED, "trailing bytes in acknowledgement");
	return KZ_OK;
}

static int decode_subscribe(struct rd *r, uint8_t v5, struct mqtt_packet *pkt, struct mqtt_err *err)
{
	if (rd_u16(r, &pkt->packet_id) || pkt->packet_id == 0)
		return fail(err, MQTT_RC_MALFORMED, "packet identifier missing or 0");
	if (v5 && decode_props(r, PK(pkt->type), &pkt->props, err))
		return KZ_EMALFORMED;
	if (pkt->props.n_sub_ids > 1)
		return fail(err, MQTT_RC_PROTOCOL_ERROR, "more than one subscription identifier");
	pkt->payload.p = r->p + r->i;
	pkt->payload.len = (uint32_t)(r->n - r->i);
	uint32_t count = 0;
	while (r->i < r->n) {
		struct mqtt_str f;
		if (rd_str(r, &f))
			return fail(err, MQTT_RC_MALFORMED, "topic filter malformed or not UTF-8");
		if (pkt->type == MQTT_SUBSCRIBE) {
			uint8_t o;
			if (rd_u8(r, &o))
				return fail(err, MQTT_RC_MALFORMED, "subscription options missing");
			if ((o & 0x03) == 3)
				return fail(err, MQTT_RC_MALFORMED, "subscription QoS 3");
			if (v5 && ((o & 0xC0) || ((o >> 4) & 0x03) == 3))
				return fail(err, MQTT_RC_MALFORMED, "reserved subscription option bits set");
			if (!v5 && (o & 0xFC))
				return fail(err, MQTT_RC_MALFORMED, "reserved subscription option bits set");
		}
		count++;
	}
	if (count == 0) /* §3.8.3-2, §3.10.3-2 */
		return fail(err, MQTT_RC_PROTOCOL_ERROR, "no topic filters");
	pkt->n_entries = count;
	return KZ_OK;
}

static int decode_suback(struct rd *r, uint8_t v5, struct mqtt_packet *pkt, struct mqtt_err *err)
{
	if (rd_u16(r, &pkt->packet_id))
		return fail(err, MQTT_RC_MALFORMED, "packet identifier missing");
	if (v5 && decode_props(r, PK(pkt->type), &pkt->props, err))
		return KZ_EMALFORMED;
	pkt->payload.p = r->p + r->i;
	pkt->payload.len = (uint32_t)(r->n - r->i);
	pkt->n_entries = pkt->payload.len;
	r->i = r->n;
	return KZ_OK;
}

static int decode_tail(struct rd *r, uint8_t v5, struct mqtt_packet *pkt, struct mqtt_err *err)
{
	/* CONNACK, DISCONNECT and AUTH: reason code then properties, both optional when short. */
	if (pkt->type == MQTT_CONNACK) {
		uint8_t f;
		if (rd_u8(r, &f) || rd_u8(r, &pkt->reason))
			return fail(err, MQTT_RC_MALFORMED, "CONNACK truncated");
		if (f & 0xFE)
			return fail(err, MQTT_RC_MALFORMED, "CONNACK reserved flags set");
		pkt->session_present = f & 1;
	} else if (!v5) {
		if (r->i != r->n)
			return fail(err, MQTT_RC_MALFORMED, "3.1.1 DISCONNECT has a body");
		return KZ_OK;
	} else if (r->i < r->n) {
		(void)rd_u8(r, &pkt->reason);
	}
	if (v5 && r->i < r->n && decode_props(r, PK(pkt->type), &pkt->props, err))
		return KZ_EMALFORMED;
	if (r->i != r->n)
		return fail(err, MQTT_RC_MALFORMED, "trailing bytes");
	return KZ_OK;
}

/* Required fixed-header flags per type (MQTT 5.0 §2.1.3); PUBLISH is free-form. */
static const uint8_t required_flags[16] = {
	[MQTT_PUBREL] = 2, [MQTT_SUBSCRIBE] = 2, [MQTT_UNSUBSCRIBE] = 2,
};

int mqtt_decode(const uint8_t *p, size_t n, uint8_t version, struct mqtt_packet *pkt,
		struct mqtt_err *err)
{
	memset(pkt, 0, sizeof *pkt);
	err->reason = MQTT_RC_SUCCESS;
	err->why = NULL;
	size_t total;
	int rc = mqtt_frame(p, n, 0, &total);
	if (rc || total != n)
		return fail(err, MQTT_RC_MALFORMED, "bad remaining length");
	pkt->type = (enum mqtt_type)(p[0] >> 4);
	pkt->flags = p[0] & 0x0F;
	if (pkt->type == 0)
		return fail(err, MQTT_RC_MALFORMED, "reserved packet type 0");
	if (pkt->type != MQTT_PUBLISH && pkt->flags != required_flags[pkt->type])
		return fail(err, MQTT_RC_MALFORMED, "bad fixed header flags");
	uint32_t rem = 0;
	size_t used = 0;
	(void)varint_decode(p + 1, n - 1, &rem, &used);
	struct rd r = { p + 1 + used, rem, 0 };
	uint8_t v5 = version == MQTT_V5;
	switch (pkt->type) {
	case MQTT_CONNECT:
		return decode_connect(&r, pkt, err);
	case MQTT_PUBLISH:
		return decode_publish(&r, v5, pkt, err);
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		return decode_ack(&r, v5, pkt, err);
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		return decode_subscribe(&r, v5, pkt, err);
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		return decode_suback(&r, v5, pkt, err);
	case MQTT_PINGREQ:
	case MQTT_PINGRESP:
		if (rem != 0)
			return fail(err, MQTT_RC_MALFORMED, "PING with a body");
		return KZ_OK;
	case MQTT_AUTH:
		if (!v5)
			return fail(err, MQTT_RC_MALFORMED, "AUTH is not an MQTT 3.1.1 packet");
		if (rem == 0)
			return KZ_OK;
		return decode_tail(&r, v5, pkt, err);
	case MQTT_CONNACK:
	case MQTT_DISCONNECT:
		return decode_tail(&r, v5, pkt, err);
	}
	return fail(err, MQTT_RC_MALFORMED, "unknown packet type");
}

bool mqtt_sub_next(const struct mqtt_packet *pkt, uint8_t version, size_t *off,
		   struct mqtt_sub_entry *e)
{
	struct rd r = { pkt->payload.p, pkt->payload.len, *off };
	uint8_t o;
	if (r.i >= r.n || rd_bin(&r, &e->filter) || rd_u8(&r, &o))
		return false;
	e->qos = o & 3;
	if (version == MQTT_V5) {
		e->no_local = o & 0x04;
		e->retain_as_published = o & 0x08;
		e->retain_handling = (o >> 4) & 3;
	} else {
		e->no_local = false;
		e->retain_as_published = false;
		e->retain_handling = 0;
	}
	*off = r.i;
	return true;
}

bool mqtt_unsub_next(const struct mqtt_packet *pkt, size_t *off, struct mqtt_str *filter)
{
	struct rd r = { pkt->payload.p, pkt->payload.len, *off };
	if (r.i >= r.n || rd_bin(&r, filter))
		return false;
	*off = r.i;
	return true;
}

/* ---------- writing: one pass counts (p == NULL), a second pass writes ---------- */

struct wr {
	uint8_t *p;
	size_t n;
};

static void wr_u8(struct wr *w, uint8_t v)
{
	if (w->p)
		w->p[w->n] = v;
	w->n++;
}

static void wr_u16(struct wr *w, uint16_t v)
{
	wr_u8(w, (uint8_t)(v >> 8));
	wr_u8(w, (uint8_t)v);
}

static void wr_u32(struct wr *w, uint32_t v)
{
	wr_u16(w, (uint16_t)(v >> 16));
	wr_u16(w, (uint16_t)v);
}

static void wr_varint(struct wr *w, uint32_t v)
{
	if (w->p)
		w->n += mqtt_varint_put(w->p + w->n, v);
	else
		w->n += mqtt_varint_size(v);
}

static void wr_raw(struct wr *w, const void *p, size_t len)
{
	if (w->p && len)
		memcpy(w->p + w->n, p, len);
	w->n += len;
}

static void wr_bin(struct wr *w, struct mqtt_str s)
{
	wr_u16(w, (uint16_t)s.len);
	wr_raw(w, s.p, s.len);
}

static void wr_props_body(struct wr *w, const struct mqtt_props *pr)
{
	for (size_t i = 0; i < KZ_ARRAY_LEN(prop_defs); i++) {
		const struct prop_def *d = &prop_defs[i];
		if (!(pr->has & MQTT_HAS(d->id)) || d->type == P_PAIR)
			continue;
		const uint8_t *src = (const uint8_t *)pr + d->offset;
		if (d->type == P_VARINT) {
			for (unsigned k = 0; k < pr->n_sub_ids; k++) {
				wr_u8(w, d->id);
				wr_varint(w, pr->sub_ids[k]);
			}
			continue;
		}
		wr_u8(w, d->id);
		switch (d->type) {
		case P_BYTE: wr_u8(w, *src); break;
		case P_U16: { uint16_t v; memcpy(&v, src, 2); wr_u16(w, v); break; }
		case P_U32: { uint32_t v; memcpy(&v, src, 4); wr_u32(w, v); break; }
		case P_STR:
		case P_BIN: wr_bin(w, *(const struct mqtt_str *)(const void *)src); break;
		}
	}
	wr_raw(w, pr->extra.p, pr->extra.len);
}

static size_t props_len(const struct mqtt_props *pr)
{
	struct wr w = { NULL, 0 };
	wr_props_body(&w, pr);
	return w.n;
}

static void wr_props(struct wr *w, const struct mqtt_props *pr)
{
	size_t len = props_len(pr);
	wr_varint(w, (uint32_t)len);
	wr_props_body(w, pr);
}

static bool props_empty(const struct mqtt_props *pr)
{
	return pr->has == 0 && pr->extra.len == 0;
}

static void wr_body(struct wr *w, const struct mqtt_packet *pkt, uint8_t v5)
{
	const struct mqtt_connect *c = &pkt->connect;
	switch (pkt->type) {
	case MQTT_CONNECT: {
		wr_bin(w, mqtt_cstr("MQTT"));
		wr_u8(w, v5 ? MQTT_V5 : MQTT_V311);
		uint8_t f = (uint8_t)((c->clean_start ? 0x02 : 0) | (c->has_will ? 0x04 : 0) |
				      (c->will_qos << 3) | (c->will_retain ? 0x20 : 0) |
				      (c->has_password ? 0x40 : 0) | (c->has_username ? 0x80 : 0));
		wr_u8(w, f);
		wr_u16(w, c->keep_alive);
		if (v5)
			wr_props(w, &pkt->props);
		wr_bin(w, c->client_id);
		if (c->has_will) {
			if (v5)
				wr_props(w, &c->will_props);
			wr_bin(w, c->will_topic);
			wr_bin(w, c->will_payload);
		}
		if (c->has_username)
			wr_bin(w, c->username);
		if (c->has_password)
			wr_bin(w, c->password);
		break;
	}
	case MQTT_CONNACK:
		wr_u8(w, pkt->session_present ? 1 : 0);
		wr_u8(w, pkt->reason);
		if (v5)
			wr_props(w, &pkt->props);
		break;
	case MQTT_PUBLISH:
		wr_bin(w, pkt->topic);
		if (pkt->qos)
			wr_u16(w, pkt->packet_id);
		if (v5)
			wr_props(w, &pkt->props);
		wr_raw(w, pkt->payload.p, pkt->payload.len);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		wr_u16(w, pkt->packet_id);
		if (v5 && (pkt->reason || !props_empty(&pkt->props))) {
			wr_u8(w, pkt->reason);
			if (!props_empty(&pkt->props))
				wr_props(w, &pkt->props);
		}
		break;
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		wr_u16(w, pkt->packet_id);
		if (v5)
			wr_props(w, &pkt->props);
		if (v5 || pkt->type != MQTT_UNSUBACK)
			wr_raw(w, pkt->payload.p, pkt->payload.len);
		break;
	case MQTT_PINGREQ:
	case MQTT_PINGRESP:
		break;
	case MQTT_DISCONNECT:
	case MQTT_AUTH:
		if (v5 && (pkt->reason || !props_empty(&pkt->props))) {
			wr_u8(w, pkt->reason);
			if (!props_empty(&pkt->props))
				wr_props(w, &pkt->props);
		}
		break;
	}
}

static uint8_t first_byte(const struct mqtt_packet *pkt)
{
	uint8_t f = required_flags[pkt->type];
	if (pkt->type == MQTT_PUBLISH)
		f = (uint8_t)((pkt->dup ? 8 : 0) | (pkt->qos << 1) | (pkt->retain ? 1 : 0));
	return (uint8_t)((pkt->type << 4) | f);
}

size_t mqtt_encoded_size(const struct mqtt_packet *pkt, uint8_t version)
{
	struct wr w = { NULL, 0 };
	wr_body(&w, pkt, version == MQTT_V5);
	return 1 + mqtt_varint_size((uint32_t)w.n) + w.n;
}

int mqtt_encode(const struct mqtt_packet *pkt, uint8_t version, struct kz_buf *out)
{
	struct wr w = { NULL, 0 };
	wr_body(&w, pkt, version == MQTT_V5);
	if (w.n > MQTT_VARINT_MAX)
		return KZ_ETOOBIG;
	size_t total = 1 + mqtt_varint_size((uint32_t)w.n) + w.n;
	int rc = kz_buf_reserve(out, total);
	if (rc)
		return rc;
	uint8_t *p = kz_buf_tail(out);
	p[0] = first_byte(pkt);
	size_t h = 1 + mqtt_varint_put(p + 1, (uint32_t)w.n);
	struct wr w2 = { p + h, 0 };
	wr_body(&w2, pkt, version == MQTT_V5);
	out->len += total;
	return KZ_OK;
}

int mqtt_prop_append_str(struct kz_buf *out, uint8_t id, const uint8_t *p, uint32_t len)
{
	uint8_t h[3] = { id, (uint8_t)(len >> 8), (uint8_t)len };
	if (len > 0xFFFF)
		return KZ_ETOOBIG;
	int rc = kz_buf_append(out, h, 3);
	return rc ? rc : kz_buf_append(out, p, len);
}

int mqtt_prop_append_pair(struct kz_buf *out, struct mqtt_str key, struct mqtt_str val)
{
	int rc = mqtt_prop_append_str(out, MQTT_PROP_USER_PROPERTY, key.p, key.len);
	if (rc)
		return rc;
	uint8_t h[2] = { (uint8_t)(val.len >> 8), (uint8_t)val.len };
	rc = kz_buf_append(out, h, 2);
	return rc ? rc : kz_buf_append(out, val.p, val.len);
}

int mqtt_prop_append_byte(struct kz_buf *out, uint8_t id, uint8_t v)
{
	uint8_t h[2] = { id, v };
	return kz_buf_append(out, h, 2);
}

const char *mqtt_type_name(enum mqtt_type t)
{
	static const char *const names[] = { "RESERVED", "CONNECT", "CONNACK", "PUBLISH",
		"PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE",
		"UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH" };
	return (unsigned)t < 16 ? names[t] : "?";
}

const char *mqtt_rc_name(uint8_t rc)
{
	switch (rc) {
	case 0x00: return "Success";
	case 0x01: return "Granted QoS 1";
	case 0x02: return "Granted QoS 2";
	case 0x04: return "Disconnect with Will Message";
	case 0x10: return "No matching subscribers";
	case 0x11: return "No subscription existed";
	case 0x80: return "Unspecified error";
	case 0x81: return "Malformed Packet";
	case 0x82: return "Protocol Error";
	case 0x83: return "Implementation specific error";
	case 0x84: return "Unsupported Protocol Version";
	case 0x85: return "Client Identifier not valid";
	case 0x87: return "Not authorized";
	case 0x89: return "Server busy";
	case 0x8B: return "Server shutting down";
	case 0x8C: return "Bad authentication method";
	case 0x8D: return "Keep Alive timeout";
	case 0x8E: return "Session taken over";
	case 0x8F: return "Topic Filter invalid";
	case 0x90: return "Topic Name invalid";
	case 0x91: return "Packet Identifier in use";
	case 0x92: return "Packet Identifier not found";
	case 0x93: return "Receive Maximum exceeded";
	case 0x94: return "Topic Alias invalid";
	case 0x95: return "Packet too large";
	case 0x96: return "Message rate too high";
	case 0x97: return "Quota exceeded";
	case 0x98: return "Administrative action";
	case 0x99: return "Payload format invalid";
	case 0x9A: return "Retain not supported";
	case 0x9B: return "QoS not supported";
	case 0x9E: return "Shared Subscriptions not supported";
	case 0x9F: return "Connection rate exceeded";
	case 0xA1: return "Subscription Identifiers not supported";
	case 0xA2: return "Wildcard Subscriptions not supported";
	}
	return "reason";
}
