/* kz_keccak.c — Keccak-f[1600] (FIPS 202 §3) and the sponge, written from the
 * specification: θ, ρ, π, χ, ι over 24 rounds on 25 little-endian 64-bit lanes. */
#include "crypto/kz_keccak.h"

#include <string.h>

static const uint64_t RC[24] = {
	0x0000000000000001ull, 0x0000000000008082ull, 0x800000000000808Aull, 0x8000000080008000ull,
	0x000000000000808Bull, 0x0000000080000001ull, 0x8000000080008081ull, 0x8000000000008009ull,
	0x000000000000008Aull, 0x0000000000000088ull, 0x0000000080008009ull, 0x000000008000000Aull,
	0x000000008000808Bull, 0x800000000000008Bull, 0x8000000000008089ull, 0x8000000000008003ull,
	0x8000000000008002ull, 0x8000000000000080ull, 0x000000000000800Aull, 0x800000008000000Aull,
	0x8000000080008081ull, 0x8000000000008080ull, 0x0000000080000001ull, 0x8000000080008008ull,
};

/* ρ offsets and π destinations along the lane cycle starting at (1,0) (FIPS 202 §3.2.2–3) */
static const unsigned RHO[24] = { 1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14,
				  27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44 };
static const unsigned PI[24] = { 10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4,
				 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1 };

static inline uint64_t rol(uint64_t x, unsigned n) { return (x << n) | (x >> ((64 - n) & 63)); }

void kz_keccak_f1600(uint64_t s[25])
{
	for (int r = 0; r < 24; r++) {
		uint64_t c[5], d;
		for (int x = 0; x < 5; x++)
			c[x] = s[x] ^ s[x + 5] ^ s[x + 10] ^ s[x + 15] ^ s[x + 20];
		for (int x = 0; x < 5; x++) {
			d = c[(x + 4) % 5] ^ rol(c[(x + 1) % 5], 1);
			for (int y = 0; y < 25; y += 5)
				s[y + x] ^= d;
		}
		uint64_t t = s[1];
		for (int i = 0; i < 24; i++) {
			uint64_t u = s[PI[i]];
			s[PI[i]] = rol(t, RHO[i]);
			t = u;
		}
		for (int y = 0; y < 25; y += 5) {
			uint64_t a[5];
			memcpy(a, s + y, sizeof a);
			for (int x = 0; x < 5; x++)
				s[y + x] = a[x] ^ (~a[(x + 1) % 5] & a[(x + 2) % 5]);
		}
		s[0] ^= RC[r];
	}
}

static void init(struct kz_keccak *k, size_t rate, uint8_t dsep)
{
	memset(k, 0, sizeof *k);
	k->rate = rate;
	k->dsep = dsep;
}

void kz_shake128_init(struct kz_keccak *k) { init(k, 168, 0x1F); }
void kz_shake256_init(struct kz_keccak *k) { init(k, 136, 0x1F); }

static inline void xor_byte(uint64_t *s, size_t i, uint8_t b) { s[i / 8] ^= (uint64_t)b << (8 * (i % 8)); }
static inline uint8_t get_byte(const uint64_t *s, size_t i) { return (uint8_t)(s[i / 8] >> (8 * (i % 8))); }

void kz_keccak_absorb(struct kz_keccak *k, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		if (k->pos == 0 && n >= k->rate) {
			for (size_t i = 0; i < k->rate / 8; i++) {
				uint64_t w = 0;
				for (int j = 7; j >= 0; j--)
					w = (w << 8) | b[8 * i + (size_t)j];
				k->s[i] ^= w;
			}
			kz_keccak_f1600(k->s);
			b += k->rate;
			n -= k->rate;
			continue;
		}
		xor_byte(k->s, k->pos++, *b++);
		n--;
		if (k->pos == k->rate) {
			kz_keccak_f1600(k->s);
			k->pos = 0;
		}
	}
}

void kz_keccak_squeeze(struct kz_keccak *k, void *out, size_t n)
{
	uint8_t *o = out;
	if (!k->squeezing) {
		/* pad10*1 with the domain bits (FIPS 202 §5.1, §6.2) */
		xor_byte(k->s, k->pos, k->dsep);
		xor_byte(k->s, k->rate - 1, 0x80);
		kz_keccak_f1600(k->s);
		k->squeezing = 1;
		k->pos = 0;
	}
	while (n) {
		if (k->pos == k->rate) {
			kz_keccak_f1600(k->s);
			k->pos = 0;
		}
		*o++ = get_byte(k->s, k->pos++);
		n--;
	}
}

static void oneshot(size_t rate, uint8_t dsep, const void *p, size_t n, void *out, size_t out_len)
{
	struct kz_keccak k;
	init(&k, rate, dsep);
	kz_keccak_absorb(&k, p, n);
	kz_keccak_squeeze(&k, out, out_len);
	memset(&k, 0, sizeof k);
}

void kz_sha3_256(const void *p, size_t n, uint8_t out[32]) { oneshot(136, 0x06, p, n, out, 32); }
void kz_sha3_512(const void *p, size_t n, uint8_t out[64]) { oneshot(72, 0x06, p, n, out, 64); }
void kz_shake256(const void *p, size_t n, void *out, size_t out_len) { oneshot(136, 0x1F, p, n, out, out_len); }
