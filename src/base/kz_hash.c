/* kz_hash.c — SipHash-2-4 keyed with a random per-process key, so that crafted client ids or
 * topics cannot force collisions (an attacker does not know the key). */
#include "base/kz_hash.h"

#include <pthread.h>
#include <string.h>
#include <sys/random.h>

static uint64_t key0 = 0x736f6d6570736575ull, key1 = 0x646f72616e646f6dull;
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

static void do_seed(void)
{
	uint64_t k[2];
	if (getrandom(k, sizeof k, 0) == (ssize_t)sizeof k) {
		key0 = k[0];
		key1 = k[1];
	}
}

void kz_hash_seed(void) { pthread_once(&seed_once, do_seed); }

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                   \
	do {                                                                       \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);          \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                             \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                             \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);          \
	} while (0)

uint64_t kz_hash(const void *data, size_t n)
{
	const uint8_t *p = data;
	uint64_t v0 = 0x736f6d6570736575ull ^ key0, v1 = 0x646f72616e646f6dull ^ key1;
	uint64_t v2 = 0x6c7967656e657261ull ^ key0, v3 = 0x7465646279746573ull ^ key1;
	uint64_t b = (uint64_t)n << 56;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t m;
		memcpy(&m, p + i, 8);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t k = 0; i + k < n; k++)
		b |= (uint64_t)p[i + k] << (8 * k);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}
