/* test_mqtt_codec.c — every packet type round-trips; malformed forms get the right code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "base/kz_err.h"
#include "mqtt/mqtt_codec.h"

static void roundtrip(const struct mqtt_packet *in, uint8_t v, struct mqtt_packet *out,
		      struct kz_buf *b)
{
	kz_buf_init(b, 0);
	assert_int_equal(mqtt_encode(in, v, b), KZ_OK);
	assert_int_equal(b->len, mqtt_encoded_size(in, v));
	size_t total;
	assert_int_equal(mqtt_frame(kz_buf_head(b), b->len, 0, &total), KZ_OK);
	assert_int_equal(total, b->len);
	struct mqtt_err err;
	int rc = mqtt_decode(kz_buf_head(b), b->len, v, out, &err);
	if (rc)
		fail_msg("decode failed: %s", err.why);
	assert_int_equal(out->type, in->type);
}

static void test_connect_v5(void **st)
{
	struct mqtt_packet p = { .type = MQTT_CONNECT }, q;
	p.connect.clean_start = true;
	p.connect.keep_alive = 30;
	p.connect.client_id = mqtt_cstr("sensor-1");
	p.connect.has_will = true;
	p.connect.will_qos = 1;
	p.connect.will_retain = true;
	p.connect.will_topic = mqtt_cstr("status/sensor-1");
	p.connect.will_payload = mqtt_cstr("offline");
	p.connect.will_props.has = MQTT_HAS(MQTT_PROP_WILL_DELAY);
	p.connect.will_props.will_delay = 5;
	p.connect.has_username = true;
	p.connect.username = mqtt_cstr("u");
	p.props.has = MQTT_HAS(MQTT_PROP_SESSION_EXPIRY) | MQTT_HAS(MQTT_PROP_RECEIVE_MAX) |
		      MQTT_HAS(MQTT_PROP_TOPIC_ALIAS_MAX) | MQTT_HAS(MQTT_PROP_MAX_PACKET_SIZE) |
		      MQTT_HAS(MQTT_PROP_REQUEST_PROBLEM_INFO);
	p.props.session_expiry = 3600;
	p.props.receive_max = 10;
	p.props.topic_alias_max = 5;
	p.props.max_packet_size = 65536;
	p.props.request_problem_info = 0;
	struct kz_buf b;
	roundtrip(&p, MQTT_V5, &q, &b);
	assert_int_equal(q.connect.protocol_level, 5);
	assert_true(q.connect.clean_start);
	assert_int_equal(q.connect.keep_alive, 30);
	assert_memory_equal(q.connect.client_id.p, "sensor-1", 8);
	assert_int_equal(q.connect.will_qos, 1);
	assert_true(q.connect.will_retain);
	assert_int_equal(q.connect.will_props.will_delay, 5);
	assert_memory_equal(q.connect.will_payload.p, "offline", 7);
	assert_int_equal(q.props.session_expiry, 3600);
	assert_int_equal(q.props.receive_max, 10);
	assert_int_equal(q.props.topic_alias_max, 5);
	assert_int_equal(q.props.max_packet_size, 65536);
	assert_true(q.props.has & MQTT_HAS(MQTT_PROP_REQUEST_PROBLEM_INFO));
	kz_buf_cleanup(&b);
}

static void test_publish_props(void **st)
{
	struct mqtt_packet p = { .type = MQTT_PUBLISH, .qos = 2, .dup = true, .retain = true,
				 .packet_id = 77 }, q;
	p.topic = mqtt_cstr("a/b");
	p.payload = mqtt_cstr("payload");
	p.props.has = MQTT_HAS(MQTT_PROP_PAYLOAD_FORMAT) | MQTT_HAS(MQTT_PROP_MESSAGE_EXPIRY) |
		      MQTT_HAS(MQTT_PROP_CONTENT_TYPE) | MQTT_HAS(MQTT_PROP_RESPONSE_TOPIC) |
		      MQTT_HAS(MQTT_PROP_CORRELATION_DATA) | MQTT_HAS(MQTT_PROP_TOPIC_ALIAS) |
		      MQTT_HAS(MQTT_PROP_SUBSCRIPTION_ID);
	p.props.payload_format = 1;
	p.props.message_expiry = 60;
	p.props.content_type = mqtt_cstr("text/plain");
	p.props.response_topic = mqtt_cstr("r/t");
	p.props.correlation_data = mqtt_cstr("\x01\x02");
	p.props.topic_alias = 3;
	p.props.sub_ids[0] = 268435455;
	p.props.sub_ids[1] = 1;
	p.props.n_sub_ids = 2;
	struct kz_buf ub;
	kz_buf_init(&ub, 0);
	mqtt_prop_append_pair(&ub, mqtt_cstr("k1"), mqtt_cstr("v1"));
	mqtt_prop_append_pair(&ub, mqtt_cstr("k1"), mqtt_cstr("v2"));
	p.props.extra.p = kz_buf_head(&ub);
	p.props.extra.len = (uint32_t)ub.len;
	struct kz_buf b;
	roundtrip(&p, MQTT_V5, &q, &b);
	assert_int_equal(q.qos, 2);
	assert_true(q.dup && q.retain);
	assert_int_equal(q.packet_id, 77);
	assert_memory_equal(q.payload.p, "payload", 7);
	assert_int_equal(q.props.message_expiry, 60);
	assert_int_equal(q.props.topic_alias, 3);
	assert_int_equal(q.props.n_sub_ids, 2);
	assert_int_equal(q.props.sub_ids[0], 268435455);
	assert_int_equal(q.props.n_user, 2);
	size_t off = 0;
	struct mqtt_str k, v;
	assert_true(mqtt_user_next(&q.props, &off, &k, &v));
	assert_memory_equal(v.p, "v1", 2);
	assert_true(mqtt_user_next(&q.props, &off, &k, &v));
	assert_memory_equal(v.p, "v2", 2);
	assert_false(mqtt_user_next(&q.props, &off, &k, &v));
	kz_buf_cleanup(&b);
	kz_buf_cleanup(&ub);
}

static void test_all_types_both_versions(void **st)
{
	static const enum mqtt_type types[] = { MQTT_CONNACK, MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL,
		MQTT_PUBCOMP, MQTT_SUBACK, MQTT_UNSUBACK, MQTT_PINGREQ, MQTT_PINGRESP, MQTT_DISCONNECT,
		MQTT_SUBSCRIBE, MQTT_UNSUBSCRIBE, MQTT_AUTH };
	static const uint8_t sub_payload[] = { 0, 3, 'a', '/', '#', 0x01 | 0x04 | 0x08 | 0x20 };
	static const uint8_t sub_payload_311[] = { 0, 3, 'a', '/', '#', 1 };
	static const uint8_t unsub_payload[] = { 0, 3, 'a', '/', '#' };
	for (int v = 0; v < 2; v++) {
		uint8_t ver = v ? MQTT_V5 : MQTT_V311;
		for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
			if (types[i] == MQTT_AUTH && ver == MQTT_V311)
				continue;
			struct mqtt_packet p = { .type = types[i], .packet_id = 9 }, q;
			if (types[i] == MQTT_SUBSCRIBE) {
				p.payload.p = ver == MQTT_V5 ? sub_payload : sub_payload_311;
				p.payload.len = sizeof sub_payload;
			} else if (types[i] == MQTT_UNSUBSCRIBE) {
				p.payload.p = unsub_payload;
				p.payload.len = sizeof unsub_payload;
			} else if (types[i] == MQTT_SUBACK || types[i] == MQTT_UNSUBACK) {
				p.payload = mqtt_cstr("\x01");
			}
			if (ver == MQTT_V5 && types[i] != MQTT_PINGREQ && types[i] != MQTT_PINGRESP &&
			    types[i] != MQTT_SUBSCRIBE && types[i] != MQTT_UNSUBSCRIBE) {
				p.reason = types[i] == MQTT_AUTH ? MQTT_RC_CONTINUE_AUTH : 0x80;
				if (types[i] == MQTT_SUBACK || types[i] == MQTT_UNSUBACK)
					p.reason = 0;
				p.props.has = MQTT_HAS(MQTT_PROP_REASON_STRING);
				p.props.reason_string = mqtt_cstr("why");
			}
			struct kz_buf b;
			roundtrip(&p, ver, &q, &b);
			if (types[i] >= MQTT_PUBACK && types[i] <= MQTT_UNSUBACK)
				assert_int_equal(q.packet_id, 9);
			if (ver == MQTT_V5 && p.props.has) {
				assert_int_equal(q.reason, p.reason);
				assert_memory_equal(q.props.reason_string.p, "why", 3);
			}
			if (types[i] == MQTT_SUBSCRIBE) {
				size_t off = 0;
				struct mqtt_sub_entry e;
				assert_true(mqtt_sub_next(&q, ver, &off, &e));
				assert_int_equal(e.qos, 1);
				if (ver == MQTT_V5) {
					assert_true(e.no_local && e.retain_as_published);
					assert_int_equal(e.retain_handling, 2);
				}
			}
			kz_buf_cleanup(&b);
		}
	}
}

struct bad {
	const char *name;
	uint8_t version;
	const uint8_t *bytes;
	size_t len;
	uint8_t reason;
};

#define B(...) (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ })

static void test_malformed(void **st)
{
	const struct bad bad[] = {
		{ "reserved type 0", 5, B(0x00, 0x00), MQTT_RC_MALFORMED },
		{ "PUBREL flags", 5, B(0x60, 0x02, 0, 1), MQTT_RC_MALFORMED },
		{ "SUBSCRIBE flags", 5, B(0x80, 0x06, 0, 1, 0, 0, 0, 0), MQTT_RC_MALFORMED },
		{ "QoS 3", 5, B(0x36, 0x05, 0, 1, 'a', 0, 1), MQTT_RC_MALFORMED },
		{ "packet id 0", 5, B(0x32, 0x06, 0, 1, 'a', 0, 0, 0), MQTT_RC_MALFORMED },
		{ "topic not UTF-8", 5, B(0x30, 0x04, 0, 1, 0xff, 0), MQTT_RC_MALFORMED },
		{ "topic with NUL", 5, B(0x30, 0x04, 0, 1, 0x00, 0), MQTT_RC_MALFORMED },
		{ "property too long", 5, B(0x30, 0x05, 0, 1, 'a', 9, 1), MQTT_RC_MALFORMED },
		{ "property not for PUBLISH", 5, B(0x30, 0x09, 0, 1, 'a', 5, 0x11, 0, 0, 0, 1), MQTT_RC_MALFORMED },
		{ "duplicate property", 5, B(0x30, 0x08, 0, 1, 'a', 4, 1, 0, 1, 0), MQTT_RC_PROTOCOL_ERROR },
		{ "payload format 2", 5, B(0x30, 0x06, 0, 1, 'a', 2, 1, 2), MQTT_RC_PROTOCOL_ERROR },
		{ "topic alias 0", 5, B(0x30, 0x07, 0, 1, 'a', 3, 0x23, 0, 0), MQTT_RC_PROTOCOL_ERROR },
		{ "unknown property", 5, B(0x30, 0x06, 0, 1, 'a', 2, 0x7f, 0), MQTT_RC_MALFORMED },
		{ "SUBSCRIBE empty", 5, B(0x82, 0x03, 0, 1, 0), MQTT_RC_PROTOCOL_ERROR },
		{ "SUBSCRIBE QoS 3", 5, B(0x82, 0x07, 0, 1, 0, 0, 1, 'a', 3), MQTT_RC_MALFORMED },
		{ "SUBSCRIBE reserved bits", 5, B(0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0xC0), MQTT_RC_MALFORMED },
		{ "SUBSCRIBE RH 3", 5, B(0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0x30), MQTT_RC_MALFORMED },
		{ "3.1.1 SUBSCRIBE options", 4, B(0x82, 0x06, 0, 1, 0, 1, 'a', 0x04), MQTT_RC_MALFORMED },
		{ "two subscription ids", 5, B(0x82, 0x0b, 0, 1, 4, 0x0b, 1, 0x0b, 2, 0, 1, 'a', 0), MQTT_RC_PROTOCOL_ERROR },
		{ "PING with body", 5, B(0xC0, 0x01, 0), MQTT_RC_MALFORMED },
		{ "3.1.1 AUTH", 4, B(0xF0, 0x00), MQTT_RC_MALFORMED },
		{ "3.1.1 DISCONNECT body", 4, B(0xE0, 0x01, 0), MQTT_RC_MALFORMED },
		{ "CONNECT bad name", 5, B(0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'X', 5, 2, 0, 0, 0, 0), MQTT_RC_UNSUPPORTED_VERSION },
		{ "CONNECT level 6", 5, B(0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 6, 2, 0, 0, 0, 0), MQTT_RC_UNSUPPORTED_VERSION },
		{ "CONNECT reserved flag", 5, B(0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 5, 3, 0, 0, 0, 0, 0), MQTT_RC_MALFORMED },
		{ "CONNECT will qos w/o will", 5, B(0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x0A, 0, 0, 0, 0, 0), MQTT_RC_MALFORMED },
		{ "CONNECT trailing", 4, B(0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 0, 9), MQTT_RC_MALFORMED },
		{ "CONNECT 3.1.1 pass w/o user", 4, B(0x10, 0x0e, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x42, 0, 0, 0, 0, 0, 0), MQTT_RC_MALFORMED },
		{ "CONNACK reserved flags", 5, B(0x20, 0x03, 2, 0, 0), MQTT_RC_MALFORMED },
		{ "receive max 0", 5, B(0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 3, 0x21, 0, 0, 0, 0), MQTT_RC_PROTOCOL_ERROR },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct mqtt_packet p;
		struct mqtt_err err;
		int rc = mqtt_decode(bad[i].bytes, bad[i].len, bad[i].version, &p, &err);
		if (rc == KZ_OK)
			fail_msg("'%s' was accepted", bad[i].name);
		if (err.reason != bad[i].reason)
			fail_msg("'%s': reason 0x%02X, expected 0x%02X (%s)", bad[i].name, err.reason,
				 bad[i].reason, err.why);
		assert_non_null(err.why);
	}
}

static void test_frame(void **st)
{
	size_t total;
	assert_int_equal(mqtt_frame(B(0x30), 0, &total), KZ_EAGAIN);
	assert_int_equal(mqtt_frame(B(0x30, 0x80), 0, &total), KZ_EAGAIN);
	assert_int_equal(mqtt_frame(B(0x30, 0x80, 0x80, 0x80, 0x80, 0x01), 0, &total), KZ_EMALFORMED);
	assert_int_equal(mqtt_frame(B(0x30, 0x80, 0x00), 0, &total), KZ_EMALFORMED); /* non-minimal */
	assert_int_equal(mqtt_frame(B(0x30, 0xff, 0x7f), 1000, &total), KZ_ETOOBIG);
	assert_int_equal(mqtt_frame(B(0x30, 0x02, 0, 0), 0, &total), KZ_OK);
	assert_int_equal(total, 4);
	static const uint32_t vals[] = { 0, 127, 128, 16383, 16384, 2097151, 2097152, MQTT_VARINT_MAX };
	for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
		uint8_t buf[5] = { 0x30 };
		size_t n = mqtt_varint_put(buf + 1, vals[i]);
		assert_int_equal(n, mqtt_varint_size(vals[i]));
		assert_int_equal(mqtt_frame(buf, 1 + n, 0, &total), vals[i] ? KZ_EAGAIN : KZ_OK);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_v5), cmocka_unit_test(test_publish_props),
		cmocka_unit_test(test_all_types_both_versions), cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_frame),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
