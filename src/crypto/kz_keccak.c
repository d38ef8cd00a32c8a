/* kz_keccak.c — Keccak-f[1600] (FIPS 202 §3) and the sponge, written from the
 * specification: θ, ρ, π, χ, ι over 24 rounds on 25 little-endian 64-bit lanes, the round
 * unrolled over local lanes (a loop over tables cost 4× as much). */
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

static inline uint64_t rol(uint64_t x, unsigned n) { return (x << n) | (x >> (64 - n)); }

/* One round, unrolled over the 25 lanes a[x + 5y] (generated from the formulas of §3.2:
 * θ: c[x] = ⊕_y a[x,y], d[x] = c[x−1] ⊕ rol(c[x+1], 1); ρ: rotate a[x,y] by r[x,y]; π: the lane
 * at (x, y) goes to (y, 2x + 3y mod 5); χ: a[x,y] = b[x,y] ⊕ (¬b[x+1,y] ∧ b[x+2,y]); ι). */
void kz_keccak_f1600(uint64_t s[25])
{
	uint64_t a0 = s[0], a1 = s[1], a2 = s[2], a3 = s[3], a4 = s[4];
	uint64_t a5 = s[5], a6 = s[6], a7 = s[7], a8 = s[8], a9 = s[9];
	uint64_t a10 = s[10], a11 = s[11], a12 = s[12], a13 = s[13], a14 = s[14];
	uint64_t a15 = s[15], a16 = s[16], a17 = s[17], a18 = s[18], a19 = s[19];
	uint64_t a20 = s[20], a21 = s[21], a22 = s[22], a23 = s[23], a24 = s[24];
	for (int r = 0; r < 24; r++) {
		uint64_t c0, c1, c2, c3, c4, d0, d1, d2, d3, d4;
		c0 = a0 ^ a5 ^ a10 ^ a15 ^ a20;
		c1 = a1 ^ a6 ^ a11 ^ a16 ^ a21;
		c2 = a2 ^ a7 ^ a12 ^ a17 ^ a22;
		c3 = a3 ^ a8 ^ a13 ^ a18 ^ a23;
		c4 = a4 ^ a9 ^ a14 ^ a19 ^ a24;
		d0 = c4 ^ rol(c1, 1);
		d1 = c0 ^ rol(c2, 1);
		d2 = c1 ^ rol(c3, 1);
		d3 = c2 ^ rol(c4, 1);
		d4 = c3 ^ rol(c0, 1);
		uint64_t b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16, b17, b18, b19, b20, b21, b22, b23, b24;
		b0 = (a0 ^ d0);
		b16 = rol((a5 ^ d0), 36);
		b7 = rol((a10 ^ d0), 3);
		b23 = rol((a15 ^ d0), 41);
		b14 = rol((a20 ^ d0), 18);
		b10 = rol((a1 ^ d1), 1);
		b1 = rol((a6 ^ d1), 44);
		b17 = rol((a11 ^ d1), 10);
		b8 = rol((a16 ^ d1), 45);
		b24 = rol((a21 ^ d1), 2);
		b20 = rol((a2 ^ d2), 62);
		b11 = rol((a7 ^ d2), 6);
		b2 = rol((a12 ^ d2), 43);
		b18 = rol((a17 ^ d2), 15);
		b9 = rol((a22 ^ d2), 61);
		b5 = rol((a3 ^ d3), 28);
		b21 = rol((a8 ^ d3), 55);
		b12 = rol((a13 ^ d3), 25);
		b3 = rol((a18 ^ d3), 21);
		b19 = rol((a23 ^ d3), 56);
		b15 = rol((a4 ^ d4), 27);
		b6 = rol((a9 ^ d4), 20);
		b22 = rol((a14 ^ d4), 39);
		b13 = rol((a19 ^ d4), 8);
		b4 = rol((a24 ^ d4), 14);
		a0 = b0 ^ (~b1 & b2);
		a1 = b1 ^ (~b2 & b3);
		a2 = b2 ^ (~b3 & b4);
		a3 = b3 ^ (~b4 & b0);
		a4 = b4 ^ (~b0 & b1);
		a5 = b5 ^ (~b6 & b7);
		a6 = b6 ^ (~b7 & b8);
		a7 = b7 ^ (~b8 & b9);
		a8 = b8 ^ (~b9 & b5);
		a9 = b9 ^ (~b5 & b6);
		a10 = b10 ^ (~b11 & b12);
		a11 = b11 ^ (~b12 & b13);
		a12 = b12 ^ (~b13 & b14);
		a13 = b13 ^ (~b14 & b10);
		a14 = b14 ^ (~b10 & b11);
		a15 = b15 ^ (~b16 & b17);
		a16 = b16 ^ (~b17 & b18);
		a17 = b17 ^ (~b18 & b19);
		a18 = b18 ^ (~b19 & b15);
		a19 = b19 ^ (~b15 & b16);
		a20 = b20 ^ (~b21 & b22);
		a21 = b21 ^ (~b22 & b23);
		a22 = b22 ^ (~b23 & b24);
		a23 = b23 ^ (~b24 & b20);
		a24 = b24 ^ (~b20 & b21);
		a0 ^= RC[r];
	}

	s[0] = a0;
	s[1] = a1;
	s[2] = a2;
	s[3] = a3;
	s[4] = a4;
	s[5] = a5;
	s[6] = a6;
	s[7] = a7;
	s[8] = a8;
	s[9] = a9;
	s[10] = a10;
	s[11] = a11;
	s[12] = a12;
	s[13] = a13;
	s[14] = a14;
	s[15] = a15;
	s[16] = a16;
	s[17] = a17;
	s[18] = a18;
	s[19] = a19;
	s[20] = a20;
	s[21] = a21;
	s[22] = a22;
	s[23] = a23;
	s[24] = a24;
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
		if (k->pos % 8 == 0 && n >= 8) { /* whole lanes, little-endian */
			uint64_t w = k->s[k->pos / 8];
			for (int j = 0; j < 8; j++)
				o[j] = (uint8_t)(w >> (8 * j));
			o += 8;
			k->pos += 8;
			n -= 8;
			continue;
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
