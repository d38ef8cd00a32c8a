/* fuzz_mqtt_packet.c — one framed packet through the decoder in both versions; whatever
 * decodes must re-encode and decode to the same type. */
#include "mqtt/mqtt_codec.h"
#include "base/kz_err.h"

#include <assert.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t total;
	if (mqtt_frame(data, size, 1u << 20, &total) != KZ_OK)
		return 0;
	for (int v = 4; v <= 5; v++) {
		struct mqtt_packet p;
		struct mqtt_err err;
		if (mqtt_decode(data, total, (uint8_t)v, &p, &err) != KZ_OK) {
			assert(err.why && err.reason >= 0x80);
			continue;
		}
		size_t off = 0;
		struct mqtt_sub_entry e;
		struct mqtt_str k, val;
		if (p.type == MQTT_SUBSCRIBE)
			while (mqtt_sub_next(&p, (uint8_t)v, &off, &e))
				;
		off = 0;
		while (mqtt_user_next(&p.props, &off, &k, &val))
			;
		/* the decoder takes the version from CONNECT itself */
		uint8_t ver = p.type == MQTT_CONNECT ? p.connect.protocol_level : (uint8_t)v;
		struct kz_buf b;
		kz_buf_init(&b, 0);
		/* user properties are carried raw on decode; hand them back as extra */
		p.props.extra = p.props.n_user ? (struct mqtt_str){ 0 } : p.props.extra;
		if (mqtt_encode(&p, ver, &b) == KZ_OK) {
			struct mqtt_packet q;
			struct mqtt_err e2;
			if (mqtt_decode(kz_buf_head(&b), b.len, ver, &q, &e2) == KZ_OK)
				assert(q.type == p.type);
		}
		kz_buf_cleanup(&b);
	}
	return 0;
}
