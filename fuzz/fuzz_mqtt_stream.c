/* fuzz_mqtt_stream.c — arbitrary bytes, split at arbitrary points, into a broker client:
 * framing, every handler and the session state machine must never crash or leak. The
 * first byte chooses the chunk size; a valid CONNECT is prepended when the second is odd. */
#include "mqtt/mqtt_broker.h"

#include <stdlib.h>
#include <string.h>

static struct mqtt_broker broker;
static int ready;
static int closed;

static void f_flush(void *t) { (void)t; }
static void f_close(void *t) { closed = 1; }
static void f_migrate(void *t, unsigned idx) { closed = 1; }
static const struct mqtt_transport_ops ops = { f_flush, f_close, f_migrate, NULL, NULL };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready) {
		struct mqtt_limits lim;
		mqtt_limits_default(&lim);
		lim.max_packet_size = 65536;
		mqtt_broker_init(&broker, &lim, 1);
		ready = 1;
	}
	if (size < 2)
		return 0;
	size_t chunk = (size_t)data[0] % 64 + 1;
	int prepend = data[1] & 1;
	data += 2;
	size -= 2;
	struct kz_buf out;
	kz_buf_init(&out, 1u << 20);
	closed = 0;
	struct mqtt_client *c = mqtt_client_new(&broker.shards[0], &ops, NULL, &out,
						strdup("spiffe://fuzz/o/user/f"), "fuzz");
	static const uint8_t connect5[] = { 0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 10,
					    0, 0, 3, 'f', 'u', 'z' };
	if (prepend)
		mqtt_client_input(c, connect5, sizeof connect5 - 1 + 1);
	for (size_t i = 0; i < size && !closed; i += chunk) {
		size_t n = size - i < chunk ? size - i : chunk;
		mqtt_client_input(c, data + i, n);
		kz_buf_reset(&out);
	}
	mqtt_client_closed(c);
	mqtt_shard_tick(&broker.shards[0]);
	kz_buf_cleanup(&out);
	return 0;
}
