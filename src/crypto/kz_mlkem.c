/* kz_mlkem.c — ML-KEM-768, written from FIPS 203 (August 2024). Algorithm numbers below are
 * the standard's. Polynomials hold coefficients in [0, q); every reduction is a
 * multiplication by a constant (kz_mlkem_div_q), never a division instruction or a
 * data-dependent branch, and the decapsulation's re-encryption check selects the key with
 * masks. Public data (the matrix seed ρ, ciphertexts being decoded) may branch: SampleNTT's
 * rejection loop is on public bytes only. */
#include "crypto/kz_mlkem.h"
#include "crypto/kz_keccak.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

/* Built with -DKZ_CTGRIND for tests/ct: what the standard makes public is declassified for
 * valgrind, so that it reports only secret-dependent branches and addresses. */
#ifdef KZ_CTGRIND
#include <valgrind/memcheck.h>
#define CT_PUBLIC(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))
#else
#define CT_PUBLIC(p, n) ((void)(p), (void)(n))
#endif

#define Q 3329
#define N 256
#define K 3
#define ETA1 2
#define ETA2 2
#define DU 10
#define DV 4
#define POLY_BYTES 384 /* ByteEncode12 of one polynomial */

typedef struct { uint16_t c[N]; } poly;

/* ζ^BitRev7(i) mod q, ζ = 17 (§4.3) */
static const uint16_t ZETAS[128] = {
	1, 1729, 2580, 3289, 2642, 630, 1897, 848, 1062, 1919, 193, 797, 2786, 3260, 569, 1746,
	296, 2447, 1339, 1476, 3046, 56, 2240, 1333, 1426, 2094, 535, 2882, 2393, 2879, 1974, 821,
	289, 331, 3253, 1756, 1197, 2304, 2277, 2055, 650, 1977, 2513, 632, 2865, 33, 1320, 1915,
	2319, 1435, 807, 452, 1438, 2868, 1534, 2402, 2647, 2617, 1481, 648, 2474, 3110, 1227, 910,
	17, 2761, 583, 2649, 1637, 723, 2288, 1100, 1409, 2662, 3281, 233, 756, 2156, 3015, 3050,
	1703, 1651, 2789, 1789, 1847, 952, 1461, 2687, 939, 2308, 2437, 2388, 733, 2337, 268, 641,
	1584, 2298, 2037, 3220, 375, 2549, 2090, 1645, 1063, 319, 2773, 757, 2099, 561, 2466, 2594,
	2804, 1092, 403, 1026, 1143, 2150, 2775, 886, 1722, 1212, 1874, 1029, 2110, 2935, 885, 2154,
};
/* ζ^(2·BitRev7(i)+1) mod q, for BaseCaseMultiply (§4.3.1) */
static const uint16_t GAMMAS[128] = {
	17, 3312, 2761, 568, 583, 2746, 2649, 680, 1637, 1692, 723, 2606, 2288, 1041, 1100, 2229,
	1409, 1920, 2662, 667, 3281, 48, 233, 3096, 756, 2573, 2156, 1173, 3015, 314, 3050, 279,
	1703, 1626, 1651, 1678, 2789, 540, 1789, 1540, 1847, 1482, 952, 2377, 1461, 1868, 2687, 642,
	939, 2390, 2308, 1021, 2437, 892, 2388, 941, 733, 2596, 2337, 992, 268, 3061, 641, 2688,
	1584, 1745, 2298, 1031, 2037, 1292, 3220, 109, 375, 2954, 2549, 780, 2090, 1239, 1645, 1684,
	1063, 2266, 319, 3010, 2773, 556, 757, 2572, 2099, 1230, 561, 2768, 2466, 863, 2594, 735,
	2804, 525, 1092, 2237, 403, 2926, 1026, 2303, 1143, 2186, 2150, 1179, 2775, 554, 886, 2443,
	1722, 1607, 1212, 2117, 1874, 1455, 1029, 2300, 2110, 1219, 2935, 394, 885, 2444, 2154, 1175,
};

/* floor(n / 3329) for n < 2^31: m = ceil(2^43 / q) has error 2113 ≤ 2^(43−31), so the
 * product is exact on that range (tested exhaustively below 2^26 and at random above). */
uint32_t kz_mlkem_div_q(uint32_t n) { return (uint32_t)(((uint64_t)n * 2642262849u) >> 43); }

static inline uint16_t modq(uint32_t x) { return (uint16_t)(x - kz_mlkem_div_q(x) * Q); }
/* x in [0, 2q) to [0, q): subtract q, add it back under the sign mask (no branch) */
static inline uint16_t csubq(uint32_t x)
{
	uint32_t r = x - Q;
	return (uint16_t)(r + (Q & (0u - (r >> 31))));
}
static inline uint16_t addq(uint16_t a, uint16_t b) { return csubq((uint32_t)a + b); }
static inline uint16_t subq(uint16_t a, uint16_t b) { return csubq((uint32_t)a + Q - b); }
static inline uint16_t mulq(uint16_t a, uint16_t b) { return modq((uint32_t)a * b); }

/* Algorithm 9, with lazy reduction: t = ζ·f[j+len] is reduced exactly, the sums are not, so
 * after layer L every value is below (L + 1)·q (8q = 26632 after the 7 layers: fits 16 bits,
 * and ζ·8q fits kz_mlkem_div_q's range); one reduction at the end. */
static void ntt(poly *f)
{
	unsigned i = 1;
	for (unsigned len = 128; len >= 2; len /= 2) {
		for (unsigned start = 0; start < N; start += 2 * len) {
			uint32_t z = ZETAS[i++];
			for (unsigned j = start; j < start + len; j++) {
				uint16_t t = modq(z * f->c[j + len]);
				f->c[j + len] = (uint16_t)(f->c[j] + Q - t);
				f->c[j] = (uint16_t)(f->c[j] + t);
			}
		}
	}
	for (unsigned j = 0; j < N; j++)
		f->c[j] = modq(f->c[j]);
}

/* Algorithm 10 */
static void ntt_inv(poly *f)
{
	unsigned i = 127;
	for (unsigned len = 2; len <= 128; len *= 2) {
		for (unsigned start = 0; start < N; start += 2 * len) {
			uint16_t z = ZETAS[i--];
			for (unsigned j = start; j < start + len; j++) {
				uint16_t t = f->c[j];
				f->c[j] = addq(t, f->c[j + len]);
				f->c[j + len] = modq((uint32_t)z * (uint32_t)(f->c[j + len] + Q - t)); /* < 2q·q */
			}
		}
	}
	for (unsigned j = 0; j < N; j++)
		f->c[j] = mulq(f->c[j], 3303); /* 128^-1 mod q */
}

/* Algorithms 11 and 12: h = Σ_j f[j] ∘ g[j] in the NTT domain, over K pairs. The sums stay
 * unreduced (each term < 2^24.4, K = 3 of them < 2^26) and are reduced once. */
static void mul_sum(poly *h, const poly *f, const poly *g)
{
	for (unsigned i = 0; i < 128; i++) {
		uint32_t c0 = 0, c1 = 0;
		for (unsigned j = 0; j < K; j++) {
			uint32_t a0 = f[j].c[2 * i], a1 = f[j].c[2 * i + 1], b0 = g[j].c[2 * i], b1 = g[j].c[2 * i + 1];
			c0 += a0 * b0 + (uint32_t)mulq((uint16_t)a1, (uint16_t)b1) * GAMMAS[i];
			c1 += a0 * b1 + a1 * b0;
		}
		h->c[2 * i] = modq(c0);
		h->c[2 * i + 1] = modq(c1);
	}
}

static void poly_add(poly *r, const poly *a)
{
	for (unsigned j = 0; j < N; j++)
		r->c[j] = addq(r->c[j], a->c[j]);
}

/* Algorithm 5, ByteEncode_d for d < 12 (values already compressed below 2^d) and d = 12 */
static void byte_encode(const poly *f, unsigned d, uint8_t *out)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;
	for (unsigned j = 0; j < N; j++) {
		acc |= (uint32_t)f->c[j] << bits;
		bits += d;
		while (bits >= 8) {
			out[o++] = (uint8_t)acc;
			acc >>= 8;
			bits -= 8;
		}
	}
}

/* Algorithm 6, ByteDecode_d: for d = 12 the values are taken mod q (§4.2.1) */
static void byte_decode(poly *f, unsigned d, const uint8_t *in)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t i = 0;
	for (unsigned j = 0; j < N; j++) {
		while (bits < d) {
			acc |= (uint32_t)in[i++] << bits;
			bits += 8;
		}
		uint32_t v = acc & ((1u << d) - 1);
		acc >>= d;
		bits -= d;
		f->c[j] = d == 12 ? modq(v) : (uint16_t)v;
	}
}

/* Compress_d (§4.2.1): round(2^d · x / q) mod 2^d, with the division as a multiplication */
static void compress(poly *f, unsigned d)
{
	for (unsigned j = 0; j < N; j++)
		f->c[j] = (uint16_t)(kz_mlkem_div_q(((uint32_t)f->c[j] << d) + Q / 2) & ((1u << d) - 1));
}

/* Decompress_d: round(q · y / 2^d) */
static void decompress(poly *f, unsigned d)
{
	for (unsigned j = 0; j < N; j++)
		f->c[j] = (uint16_t)(((uint32_t)f->c[j] * Q + (1u << (d - 1))) >> d);
}

/* Algorithm 7, SampleNTT(ρ ‖ j ‖ i): rejection sampling on public bytes */
static void sample_ntt(poly *a, const uint8_t rho[32], uint8_t j, uint8_t i)
{
	struct kz_keccak x;
	uint8_t seed[34], b[168];
	memcpy(seed, rho, 32);
	seed[32] = j;
	seed[33] = i;
	kz_shake128_init(&x);
	kz_keccak_absorb(&x, seed, sizeof seed);
	unsigned n = 0;
	while (n < N) {
		kz_keccak_squeeze(&x, b, sizeof b);
		for (unsigned k = 0; k + 3 <= sizeof b && n < N; k += 3) {
			uint16_t d1 = (uint16_t)(b[k] | ((b[k + 1] & 0x0F) << 8));
			uint16_t d2 = (uint16_t)((b[k + 1] >> 4) | (b[k + 2] << 4));
			if (d1 < Q)
				a->c[n++] = d1;
			if (d2 < Q && n < N)
				a->c[n++] = d2;
		}
	}
}

/* Algorithm 8, SamplePolyCBD_η for η = 2 on PRF_η(s, b) = SHAKE256(s ‖ b, 64η) */
static void sample_cbd2(poly *f, const uint8_t s[32], uint8_t nonce)
{
	uint8_t in[33], buf[64 * ETA1];
	memcpy(in, s, 32);
	in[32] = nonce;
	kz_shake256(in, sizeof in, buf, sizeof buf);
	for (unsigned j = 0; j < N; j++) {
		/* 4 bits per coefficient: x = b0 + b1, y = b2 + b3, f = x − y mod q */
		uint32_t bits = (uint32_t)(buf[j / 2] >> (4 * (j & 1))) & 0x0F;
		uint32_t x = (bits & 1) + ((bits >> 1) & 1), y = ((bits >> 2) & 1) + ((bits >> 3) & 1);
		f->c[j] = modq(x + Q - y);
	}
	OPENSSL_cleanse(buf, sizeof buf);
}

/* Â[i][j] = SampleNTT(ρ ‖ j ‖ i); transposed: Â^T[i][j] = Â[j][i] */
static void gen_matrix(poly a[K][K], const uint8_t rho[32], int transposed)
{
	for (uint8_t i = 0; i < K; i++)
		for (uint8_t j = 0; j < K; j++)
			sample_ntt(&a[i][j], rho, transposed ? i : j, transposed ? j : i);
}

/* Algorithm 13, K-PKE.KeyGen(d) */
static void pke_keygen(const uint8_t d[32], uint8_t ek[KZ_MLKEM768_EK_BYTES], uint8_t dk_pke[K * POLY_BYTES])
{
	uint8_t gin[33], g[64];
	memcpy(gin, d, 32);
	gin[32] = K; /* domain separation by k (FIPS 203 final) */
	kz_sha3_512(gin, sizeof gin, g);
	const uint8_t *rho = g, *sigma = g + 32;
	CT_PUBLIC(rho, 32); /* ρ is published in ek */
	poly a[K][K], s[K], e[K], t;
	gen_matrix(a, rho, 0);
	uint8_t nonce = 0;
	for (unsigned i = 0; i < K; i++)
		sample_cbd2(&s[i], sigma, nonce++);
	for (unsigned i = 0; i < K; i++)
		sample_cbd2(&e[i], sigma, nonce++);
	for (unsigned i = 0; i < K; i++) {
		ntt(&s[i]);
		ntt(&e[i]);
	}
	for (unsigned i = 0; i < K; i++) {
		mul_sum(&t, a[i], s);
		poly_add(&t, &e[i]);
		byte_encode(&t, 12, ek + i * POLY_BYTES);
		byte_encode(&s[i], 12, dk_pke + i * POLY_BYTES);
	}
	memcpy(ek + K * POLY_BYTES, rho, 32);
	OPENSSL_cleanse(s, sizeof s);
	OPENSSL_cleanse(e, sizeof e);
	OPENSSL_cleanse(g, sizeof g);
	OPENSSL_cleanse(gin, sizeof gin);
}

/* Algorithm 14, K-PKE.Encrypt(ek, m, r) */
static void pke_encrypt(const uint8_t ek[KZ_MLKEM768_EK_BYTES], const uint8_t m[32], const uint8_t r[32],
			uint8_t ct[KZ_MLKEM768_CT_BYTES])
{
	poly t[K], at[K][K], y[K], u, v, e;
	for (unsigned i = 0; i < K; i++)
		byte_decode(&t[i], 12, ek + i * POLY_BYTES);
	gen_matrix(at, ek + K * POLY_BYTES, 1);
	uint8_t nonce = 0;
	for (unsigned i = 0; i < K; i++)
		sample_cbd2(&y[i], r, nonce++);
	for (unsigned i = 0; i < K; i++)
		ntt(&y[i]);
	for (unsigned i = 0; i < K; i++) {
		mul_sum(&u, at[i], y);
		ntt_inv(&u);
		sample_cbd2(&e, r, nonce++); /* e1[i] */
		poly_add(&u, &e);
		compress(&u, DU);
		byte_encode(&u, DU, ct + i * 32 * DU);
	}
	mul_sum(&v, t, y);
	ntt_inv(&v);
	sample_cbd2(&e, r, nonce); /* e2 */
	poly_add(&v, &e);
	poly mu;
	byte_decode(&mu, 1, m);
	decompress(&mu, 1);
	poly_add(&v, &mu);
	compress(&v, DV);
	byte_encode(&v, DV, ct + K * 32 * DU);
	OPENSSL_cleanse(y, sizeof y);
	OPENSSL_cleanse(&e, sizeof e);
	OPENSSL_cleanse(&mu, sizeof mu);
	OPENSSL_cleanse(&v, sizeof v);
	OPENSSL_cleanse(&u, sizeof u);
}

/* Algorithm 15, K-PKE.Decrypt(dk_PKE, c) */
static void pke_decrypt(const uint8_t dk_pke[K * POLY_BYTES], const uint8_t ct[KZ_MLKEM768_CT_BYTES], uint8_t m[32])
{
	poly u[K], s[K], w, v;
	for (unsigned i = 0; i < K; i++) {
		byte_decode(&u[i], DU, ct + i * 32 * DU);
		decompress(&u[i], DU);
		ntt(&u[i]);
		byte_decode(&s[i], 12, dk_pke + i * POLY_BYTES);
	}
	mul_sum(&w, s, u);
	ntt_inv(&w);
	byte_decode(&v, DV, ct + K * 32 * DU);
	decompress(&v, DV);
	for (unsigned j = 0; j < N; j++)
		w.c[j] = subq(v.c[j], w.c[j]);
	compress(&w, 1);
	byte_encode(&w, 1, m);
	OPENSSL_cleanse(s, sizeof s);
	OPENSSL_cleanse(&w, sizeof w);
}

void kz_mlkem768_keygen_seed(const uint8_t seed[KZ_MLKEM_SEED_BYTES], uint8_t ek[KZ_MLKEM768_EK_BYTES],
			     uint8_t dk[KZ_MLKEM768_DK_BYTES])
{
	/* Algorithm 16: dk = dk_PKE ‖ ek ‖ H(ek) ‖ z */
	pke_keygen(seed, ek, dk);
	memcpy(dk + K * POLY_BYTES, ek, KZ_MLKEM768_EK_BYTES);
	kz_sha3_256(ek, KZ_MLKEM768_EK_BYTES, dk + K * POLY_BYTES + KZ_MLKEM768_EK_BYTES);
	memcpy(dk + K * POLY_BYTES + KZ_MLKEM768_EK_BYTES + 32, seed + 32, 32);
}

int kz_mlkem768_keygen(uint8_t ek[KZ_MLKEM768_EK_BYTES], uint8_t dk[KZ_MLKEM768_DK_BYTES])
{
	uint8_t seed[KZ_MLKEM_SEED_BYTES];
	if (RAND_priv_bytes(seed, sizeof seed) != 1)
		return -1;
	kz_mlkem768_keygen_seed(seed, ek, dk);
	OPENSSL_cleanse(seed, sizeof seed);
	return 0;
}

int kz_mlkem768_check_ek(const uint8_t *ek, size_t n)
{
	if (n != KZ_MLKEM768_EK_BYTES)
		return -1;
	/* every 12-bit value below q (public data: branching is fine) */
	for (size_t i = 0; i < K * POLY_BYTES; i += 3) {
		uint16_t a = (uint16_t)(ek[i] | ((ek[i + 1] & 0x0F) << 8));
		uint16_t b = (uint16_t)((ek[i + 1] >> 4) | (ek[i + 2] << 4));
		if (a >= Q || b >= Q)
			return -1;
	}
	return 0;
}

int kz_mlkem768_check_dk(const uint8_t *dk, size_t n)
{
	if (n != KZ_MLKEM768_DK_BYTES)
		return -1;
	uint8_t h[32];
	kz_sha3_256(dk + K * POLY_BYTES, KZ_MLKEM768_EK_BYTES, h);
	return CRYPTO_memcmp(h, dk + K * POLY_BYTES + KZ_MLKEM768_EK_BYTES, 32) == 0 ? 0 : -1;
}

void kz_mlkem768_encaps_m(const uint8_t ek[KZ_MLKEM768_EK_BYTES], const uint8_t m[32], uint8_t ct[KZ_MLKEM768_CT_BYTES],
			  uint8_t ss[KZ_MLKEM_SS_BYTES])
{
	/* Algorithm 17: (K, r) = G(m ‖ H(ek)), c = K-PKE.Encrypt(ek, m, r) */
	uint8_t gin[64], g[64];
	memcpy(gin, m, 32);
	kz_sha3_256(ek, KZ_MLKEM768_EK_BYTES, gin + 32);
	kz_sha3_512(gin, sizeof gin, g);
	pke_encrypt(ek, m, g + 32, ct);
	memcpy(ss, g, 32);
	OPENSSL_cleanse(g, sizeof g);
	OPENSSL_cleanse(gin, sizeof gin);
}

int kz_mlkem768_encaps(const uint8_t *ek, size_t ek_len, uint8_t ct[KZ_MLKEM768_CT_BYTES], uint8_t ss[KZ_MLKEM_SS_BYTES])
{
	uint8_t m[32];
	if (kz_mlkem768_check_ek(ek, ek_len) || RAND_priv_bytes(m, sizeof m) != 1)
		return -1;
	kz_mlkem768_encaps_m(ek, m, ct, ss);
	OPENSSL_cleanse(m, sizeof m);
	return 0;
}

void kz_mlkem768_decaps(const uint8_t dk[KZ_MLKEM768_DK_BYTES], const uint8_t ct[KZ_MLKEM768_CT_BYTES],
			uint8_t ss[KZ_MLKEM_SS_BYTES])
{
	/* Algorithm 18 */
	const uint8_t *dk_pke = dk, *ek = dk + K * POLY_BYTES, *h = ek + KZ_MLKEM768_EK_BYTES, *z = h + 32;
	uint8_t gin[64], g[64], kbar[32], ct2[KZ_MLKEM768_CT_BYTES], jin[32 + KZ_MLKEM768_CT_BYTES];
	pke_decrypt(dk_pke, ct, gin);
	memcpy(gin + 32, h, 32);
	kz_sha3_512(gin, sizeof gin, g); /* K' ‖ r' */
	memcpy(jin, z, 32);
	memcpy(jin + 32, ct, KZ_MLKEM768_CT_BYTES);
	kz_shake256(jin, sizeof jin, kbar, 32); /* K̄ = J(z ‖ c) */
	pke_encrypt(ek, gin, g + 32, ct2);
	/* c ≠ c' → K̄, chosen with a mask, not a branch */
	uint8_t diff = 0;
	for (size_t i = 0; i < KZ_MLKEM768_CT_BYTES; i++)
		diff |= (uint8_t)(ct[i] ^ ct2[i]);
	uint8_t mask = (uint8_t)(((uint32_t)diff + 0xFF) >> 8); /* 0x00 equal, 0x01 different */
	mask = (uint8_t)-mask;                                  /* 0x00 or 0xFF */
	for (size_t i = 0; i < 32; i++)
		ss[i] = (uint8_t)((g[i] & ~mask) | (kbar[i] & mask));
	OPENSSL_cleanse(gin, sizeof gin);
	OPENSSL_cleanse(g, sizeof g);
	OPENSSL_cleanse(kbar, sizeof kbar);
	OPENSSL_cleanse(jin, 32);
}
