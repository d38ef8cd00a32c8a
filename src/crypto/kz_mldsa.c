/* kz_mldsa.c — ML-DSA-65, written from FIPS 204 (August 2024); algorithm numbers are the
 * standard's. Arithmetic mod q = 8380417 in Montgomery form (R = 2^32) for products, with
 * the reductions done by multiplications and masks, never by division or branches on
 * secret values. This step: key generation. */
#include "crypto/kz_mldsa.h"
#include "crypto/kz_keccak.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#define Q 8380417
#define N 256
#define K 6
#define L 5
#define ETA 4
#define D 13
#define QINV 58728449u  /* q^-1 mod 2^32 */
#define R2 2365951      /* 2^64 mod q: mont(x · R2) = x · 2^32 mod q */
#define F_MONT 16382    /* 256^-1 · 2^32 mod q, for the inverse NTT */

typedef struct { int32_t c[N]; } poly; /* coefficients in [0, q) between operations */

/* ζ^BitRev8(k) · 2^32 mod q, ζ = 1753 (§7.5, Montgomery form) */
static const int32_t ZETAS[256] = {
	4193792, 25847, 5771523, 7861508, 237124, 7602457, 7504169, 466468,
	1826347, 2353451, 8021166, 6288512, 3119733, 5495562, 3111497, 2680103,
	2725464, 1024112, 7300517, 3585928, 7830929, 7260833, 2619752, 6271868,
	6262231, 4520680, 6980856, 5102745, 1757237, 8360995, 4010497, 280005,
	2706023, 95776, 3077325, 3530437, 6718724, 4788269, 5842901, 3915439,
	4519302, 5336701, 3574422, 5512770, 3539968, 8079950, 2348700, 7841118,
	6681150, 6736599, 3505694, 4558682, 3507263, 6239768, 6779997, 3699596,
	811944, 531354, 954230, 3881043, 3900724, 5823537, 2071892, 5582638,
	4450022, 6851714, 4702672, 5339162, 6927966, 3475950, 2176455, 6795196,
	7122806, 1939314, 4296819, 7380215, 5190273, 5223087, 4747489, 126922,
	3412210, 7396998, 2147896, 2715295, 5412772, 4686924, 7969390, 5903370,
	7709315, 7151892, 8357436, 7072248, 7998430, 1349076, 1852771, 6949987,
	5037034, 264944, 508951, 3097992, 44288, 7280319, 904516, 3958618,
	4656075, 8371839, 1653064, 5130689, 2389356, 8169440, 759969, 7063561,
	189548, 4827145, 3159746, 6529015, 5971092, 8202977, 1315589, 1341330,
	1285669, 6795489, 7567685, 6940675, 5361315, 4499357, 4751448, 3839961,
	2091667, 3407706, 2316500, 3817976, 5037939, 2244091, 5933984, 4817955,
	266997, 2434439, 7144689, 3513181, 4860065, 4621053, 7183191, 5187039,
	900702, 1859098, 909542, 819034, 495491, 6767243, 8337157, 7857917,
	7725090, 5257975, 2031748, 3207046, 4823422, 7855319, 7611795, 4784579,
	342297, 286988, 5942594, 4108315, 3437287, 5038140, 1735879, 203044,
	2842341, 2691481, 5790267, 1265009, 4055324, 1247620, 2486353, 1595974,
	4613401, 1250494, 2635921, 4832145, 5386378, 1869119, 1903435, 7329447,
	7047359, 1237275, 5062207, 6950192, 7929317, 1312455, 3306115, 6417775,
	7100756, 1917081, 5834105, 7005614, 1500165, 777191, 2235880, 3406031,
	7838005, 5548557, 6709241, 6533464, 5796124, 4656147, 594136, 4603424,
	6366809, 2432395, 2454455, 8215696, 1957272, 3369112, 185531, 7173032,
	5196991, 162844, 1616392, 3014001, 810149, 1652634, 4686184, 6581310,
	5341501, 3523897, 3866901, 269760, 2213111, 7404533, 1717735, 472078,
	7953734, 1723600, 6577327, 1910376, 6712985, 7276084, 8119771, 4546524,
	5441381, 6144432, 7959518, 6094090, 183443, 7403526, 1612842, 4834730,
	7826001, 3919660, 8332111, 7018208, 3937738, 1400424, 7534263, 1976782,
};

/* a · 2^-32 mod q, in (−q, q), for |a| < 2^31 · q */
static inline int32_t mont(int64_t a)
{
	int32_t t = (int32_t)((uint32_t)a * QINV);
	return (int32_t)((a - (int64_t)t * Q) >> 32);
}

/* (−q, 2q) → [0, q) with masks */
static inline int32_t freeze(int32_t a)
{
	a += Q & (a >> 31);
	a -= Q;
	a += Q & (a >> 31);
	return a;
}

/* Algorithm 41 */
static void ntt(poly *w)
{
	unsigned m = 0;
	for (unsigned len = 128; len >= 1; len /= 2) {
		for (unsigned start = 0; start < N; start += 2 * len) {
			int64_t z = ZETAS[++m];
			for (unsigned j = start; j < start + len; j++) {
				int32_t t = mont(z * w->c[j + len]);
				w->c[j + len] = freeze(w->c[j] - t);
				w->c[j] = freeze(w->c[j] + t);
			}
		}
	}
}

/* Algorithm 42 */
static void ntt_inv(poly *w)
{
	unsigned m = 256;
	for (unsigned len = 1; len < N; len *= 2) {
		for (unsigned start = 0; start < N; start += 2 * len) {
			int64_t z = Q - ZETAS[--m]; /* −ζ */
			for (unsigned j = start; j < start + len; j++) {
				int32_t t = w->c[j];
				w->c[j] = freeze(t + w->c[j + len] - Q);
				w->c[j + len] = freeze(mont(z * freeze(t - w->c[j + len])));
			}
		}
	}
	for (unsigned j = 0; j < N; j++)
		w->c[j] = freeze(mont((int64_t)F_MONT * w->c[j]));
}

/* Algorithm 30, RejNTTPoly(ρ ‖ s ‖ r): public data, rejection by branching is fine */
static void rej_ntt_poly(poly *a, const uint8_t rho[32], uint8_t s, uint8_t r)
{
	struct kz_keccak x;
	uint8_t seed[34], b[168];
	memcpy(seed, rho, 32);
	seed[32] = s;
	seed[33] = r;
	kz_shake128_init(&x);
	kz_keccak_absorb(&x, seed, sizeof seed);
	unsigned n = 0;
	while (n < N) {
		kz_keccak_squeeze(&x, b, sizeof b);
		for (unsigned i = 0; i + 3 <= sizeof b && n < N; i += 3) {
			int32_t z = b[i] | (b[i + 1] << 8) | ((b[i + 2] & 0x7F) << 16); /* Algorithm 14 */
			if (z < Q)
				a->c[n++] = z;
		}
	}
}

/* Algorithm 31, RejBoundedPoly for η = 4 on SHAKE256(ρ' ‖ r as 2 bytes). The rejection is on
 * the SHAKE output: which half-bytes are skipped leaks nothing about the accepted values. */
static void rej_bounded_poly(poly *a, const uint8_t rhop[64], uint16_t r)
{
	struct kz_keccak x;
	uint8_t seed[66], b[136];
	memcpy(seed, rhop, 64);
	seed[64] = (uint8_t)r;
	seed[65] = (uint8_t)(r >> 8);
	kz_shake256_init(&x);
	kz_keccak_absorb(&x, seed, sizeof seed);
	unsigned n = 0;
	while (n < N) {
		kz_keccak_squeeze(&x, b, sizeof b);
		for (unsigned i = 0; i < sizeof b && n < N; i++) {
			int32_t z0 = b[i] & 0x0F, z1 = b[i] >> 4; /* Algorithm 15: b < 9 → η − b */
			if (z0 < 9)
				a->c[n++] = freeze(ETA - z0);
			if (z1 < 9 && n < N)
				a->c[n++] = freeze(ETA - z1);
		}
	}
	OPENSSL_cleanse(b, sizeof b);
}

/* Algorithm 16, SimpleBitPack (bits LSB first) / Algorithm 17, BitPack(w, a, b): b − w */
static void pack(const poly *p, unsigned bits, int32_t b, int bitpack, uint8_t *out)
{
	uint64_t acc = 0;
	unsigned have = 0;
	size_t o = 0;
	for (unsigned j = 0; j < N; j++) {
		uint32_t v = bitpack ? (uint32_t)freeze(b - p->c[j] + Q) : (uint32_t)p->c[j];
		acc |= (uint64_t)v << have;
		have += bits;
		while (have >= 8) {
			out[o++] = (uint8_t)acc;
			acc >>= 8;
			have -= 8;
		}
	}
}

void kz_mldsa65_keygen_seed(const uint8_t xi[32], uint8_t pk[KZ_MLDSA65_PK_BYTES], uint8_t sk[KZ_MLDSA65_SK_BYTES])
{
	/* (ρ, ρ', K) = H(ξ ‖ k ‖ l, 128) */
	uint8_t in[34], seeds[128];
	memcpy(in, xi, 32);
	in[32] = K;
	in[33] = L;
	kz_shake256(in, sizeof in, seeds, sizeof seeds);
	const uint8_t *rho = seeds, *rhop = seeds + 32, *key = seeds + 96;
	poly s1[L], s2[K], s1h[L], t, a;
	for (unsigned r = 0; r < L; r++)
		rej_bounded_poly(&s1[r], rhop, (uint16_t)r);
	for (unsigned r = 0; r < K; r++)
		rej_bounded_poly(&s2[r], rhop, (uint16_t)(r + L));
	for (unsigned r = 0; r < L; r++) {
		s1h[r] = s1[r];
		ntt(&s1h[r]);
	}
	memcpy(pk, rho, 32);
	uint8_t *t0_out = sk + 128 + 32 * (K + L) * 4;
	for (unsigned r = 0; r < K; r++) {
		/* t = NTT^-1(Â ∘ NTT(s1)) + s2, row r */
		int32_t acc[N] = { 0 };
		for (unsigned s = 0; s < L; s++) {
			rej_ntt_poly(&a, rho, (uint8_t)s, (uint8_t)r);
			for (unsigned j = 0; j < N; j++) {
				int32_t am = freeze(mont((int64_t)a.c[j] * R2)); /* Â into Montgomery form */
				acc[j] += freeze(mont((int64_t)am * s1h[s].c[j]));
			}
		}
		for (unsigned j = 0; j < N; j++) { /* [0, 5q) → [0, q) with four masked subtractions */
			int32_t x = acc[j];
			for (int i = 0; i < L - 1; i++) {
				x -= Q;
				x += Q & (x >> 31);
			}
			t.c[j] = x;
		}
		ntt_inv(&t);
		for (unsigned j = 0; j < N; j++)
			t.c[j] = freeze(t.c[j] + s2[r].c[j] - Q);
		/* Algorithm 35, Power2Round: t1 = (t − t0) / 2^d, t0 = t mod± 2^d */
		poly t1, t0;
		for (unsigned j = 0; j < N; j++) {
			int32_t v = t.c[j], lo = v & ((1 << D) - 1);
			int32_t r0 = lo - ((((1 << (D - 1)) - lo) >> 31) & (1 << D)); /* in (−2^12, 2^12] */
			t0.c[j] = freeze(r0 + Q);
			t1.c[j] = (v - r0) >> D;
		}
		pack(&t1, 10, 0, 0, pk + 32 + r * 320);
		pack(&t0, 13, 1 << (D - 1), 1, t0_out + r * 416);
	}
	/* sk = ρ ‖ K ‖ tr ‖ s1 ‖ s2 ‖ t0, tr = H(pk, 64) */
	memcpy(sk, rho, 32);
	memcpy(sk + 32, key, 32);
	kz_shake256(pk, KZ_MLDSA65_PK_BYTES, sk + 64, 64);
	for (unsigned r = 0; r < L; r++)
		pack(&s1[r], 4, ETA, 1, sk + 128 + r * 128);
	for (unsigned r = 0; r < K; r++)
		pack(&s2[r], 4, ETA, 1, sk + 128 + (L + r) * 128);
	OPENSSL_cleanse(seeds, sizeof seeds);
	OPENSSL_cleanse(s1, sizeof s1);
	OPENSSL_cleanse(s2, sizeof s2);
	OPENSSL_cleanse(s1h, sizeof s1h);
	OPENSSL_cleanse(&t, sizeof t);
}

/* Algorithms 2 and 3: M' = 0 ‖ |ctx| ‖ ctx ‖ M (pure ML-DSA), malloc'd; NULL when the
 * context is over 255 bytes or there is no memory. */
static uint8_t *mprime(const uint8_t *msg, size_t msg_len, const uint8_t *ctx, size_t ctx_len)
{
	uint8_t *m = ctx_len <= 255 ? malloc(2 + ctx_len + msg_len + 1) : NULL;
	if (!m)
		return NULL;
	m[0] = 0;
	m[1] = (uint8_t)ctx_len;
	if (ctx_len)
		memcpy(m + 2, ctx, ctx_len);
	if (msg_len)
		memcpy(m + 2 + ctx_len, msg, msg_len);
	return m;
}

/* ---------- verification (public data only) ---------- */

#define TAU 49
#define LAMBDA_BYTES 48           /* c̃: λ/4 */
#define GAMMA1 (1 << 19)
#define GAMMA2 ((Q - 1) / 32)
#define BETA (TAU * ETA)
#define OMEGA 55

/* Algorithm 29, SampleInBall(c̃) */
static void sample_in_ball(poly *c, const uint8_t ct[LAMBDA_BYTES])
{
	struct kz_keccak x;
	uint8_t s[8], j;
	kz_shake256_init(&x);
	kz_keccak_absorb(&x, ct, LAMBDA_BYTES);
	kz_keccak_squeeze(&x, s, 8);
	uint64_t h = 0;
	for (int i = 7; i >= 0; i--)
		h = (h << 8) | s[i];
	memset(c, 0, sizeof *c);
	for (unsigned i = N - TAU; i < N; i++) {
		do
			kz_keccak_squeeze(&x, &j, 1);
		while (j > i);
		c->c[i] = c->c[j];
		c->c[j] = (h >> (i + TAU - N)) & 1 ? Q - 1 : 1;
	}
}

/* Algorithm 36, Decompose for γ2 = (q − 1)/32: r1 in [0, 16), r0 centred */
static void decompose(int32_t r, int32_t *r1, int32_t *r0)
{
	int32_t lo = r % (2 * GAMMA2);
	if (lo > GAMMA2)
		lo -= 2 * GAMMA2;
	if (r - lo == Q - 1) {
		*r1 = 0;
		*r0 = lo - 1;
	} else {
		*r1 = (r - lo) / (2 * GAMMA2);
		*r0 = lo;
	}
}

/* Algorithm 40, UseHint */
static int32_t use_hint(int h, int32_t r)
{
	int32_t r1, r0;
	decompose(r, &r1, &r0);
	if (!h)
		return r1;
	return r0 > 0 ? (r1 + 1) % 16 : (r1 + 15) % 16;
}

/* Algorithm 21, HintBitUnpack: −1 when malformed (indices not increasing, too many) */
static int hint_unpack(const uint8_t y[OMEGA + K], uint8_t h[K][N])
{
	memset(h, 0, (size_t)K * N);
	unsigned index = 0;
	for (unsigned i = 0; i < K; i++) {
		if (y[OMEGA + i] < index || y[OMEGA + i] > OMEGA)
			return -1;
		unsigned first = index;
		while (index < y[OMEGA + i]) {
			if (index > first && y[index - 1] >= y[index])
				return -1;
			h[i][y[index]] = 1;
			index++;
		}
	}
	for (unsigned i = index; i < OMEGA; i++)
		if (y[i] != 0)
			return -1;
	return 0;
}

/* little-endian bit reading, Algorithms 18/19 */
static void unpack(poly *p, unsigned bits, const uint8_t *in)
{
	uint64_t acc = 0;
	unsigned have = 0;
	size_t i = 0;
	for (unsigned j = 0; j < N; j++) {
		while (have < bits) {
			acc |= (uint64_t)in[i++] << have;
			have += 8;
		}
		p->c[j] = (int32_t)(acc & ((1u << bits) - 1));
		acc >>= bits;
		have -= bits;
	}
}

int kz_mldsa65_verify_internal(const uint8_t pk[KZ_MLDSA65_PK_BYTES], const uint8_t *msg, size_t msg_len,
			       const uint8_t *sig, size_t sig_len)
{
	if (sig_len != KZ_MLDSA65_SIG_BYTES)
		return -1;
	/* sigDecode: c̃ ‖ z (l × 640) ‖ h (ω + k) */
	uint8_t h[K][N];
	if (hint_unpack(sig + LAMBDA_BYTES + L * 640, h))
		return -1;
	poly z[L], c, t1, a, w;
	for (unsigned s = 0; s < L; s++) {
		unpack(&z[s], 20, sig + LAMBDA_BYTES + s * 640);
		for (unsigned j = 0; j < N; j++) {
			int32_t v = GAMMA1 - z[s].c[j]; /* BitUnpack(γ1 − 1, γ1) */
			if (v >= GAMMA1 - BETA || v <= -(GAMMA1 - BETA))
				return -1; /* ‖z‖∞ ≥ γ1 − β */
			z[s].c[j] = v < 0 ? v + Q : v;
		}
		ntt(&z[s]);
	}
	/* μ = H(tr ‖ M', 64), tr = H(pk, 64) */
	uint8_t tr[64], mu[64], w1enc[K * 128], ct2[LAMBDA_BYTES];
	kz_shake256(pk, KZ_MLDSA65_PK_BYTES, tr, 64);
	struct kz_keccak x;
	kz_shake256_init(&x);
	kz_keccak_absorb(&x, tr, 64);
	kz_keccak_absorb(&x, msg, msg_len);
	kz_keccak_squeeze(&x, mu, 64);
	sample_in_ball(&c, sig);
	ntt(&c);
	for (unsigned r = 0; r < K; r++) {
		unpack(&t1, 10, pk + 32 + r * 320);
		for (unsigned j = 0; j < N; j++)
			t1.c[j] <<= D;
		ntt(&t1);
		int64_t acc[N] = { 0 };
		for (unsigned s = 0; s < L; s++) {
			rej_ntt_poly(&a, pk, (uint8_t)s, (uint8_t)r);
			for (unsigned j = 0; j < N; j++)
				acc[j] += freeze(mont((int64_t)freeze(mont((int64_t)a.c[j] * R2)) * z[s].c[j]));
		}
		for (unsigned j = 0; j < N; j++) {
			int64_t ct1 = freeze(mont((int64_t)freeze(mont((int64_t)c.c[j] * R2)) * t1.c[j]));
			w.c[j] = (int32_t)(((acc[j] - ct1) % Q + Q) % Q);
		}
		ntt_inv(&w);
		poly w1;
		for (unsigned j = 0; j < N; j++)
			w1.c[j] = use_hint(h[r][j], w.c[j]);
		pack(&w1, 4, 0, 0, w1enc + r * 128); /* Algorithm 28, w1Encode */
	}
	kz_shake256_init(&x);
	kz_keccak_absorb(&x, mu, 64);
	kz_keccak_absorb(&x, w1enc, sizeof w1enc);
	kz_keccak_squeeze(&x, ct2, LAMBDA_BYTES);
	return memcmp(ct2, sig, LAMBDA_BYTES) == 0 ? 0 : -1;
}

int kz_mldsa65_verify(const uint8_t *pk, size_t pk_len, const uint8_t *msg, size_t msg_len, const uint8_t *ctx,
		      size_t ctx_len, const uint8_t *sig, size_t sig_len)
{
	if (pk_len != KZ_MLDSA65_PK_BYTES)
		return -1;
	uint8_t *m = mprime(msg, msg_len, ctx, ctx_len);
	if (!m)
		return -1;
	int rc = kz_mldsa65_verify_internal(pk, m, 2 + ctx_len + msg_len, sig, sig_len);
	free(m);
	return rc;
}

/* ---------- signing ---------- */

#ifdef KZ_CTGRIND
#include <valgrind/memcheck.h>
#define CT_PUBLIC(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))
#else
#define CT_PUBLIC(p, n) ((void)(p), (void)(n))
#endif

/* Decompose without division or branches: r1 = ⌊(r + γ2 − 1) / 2γ2⌋ with 2γ2 = 512 · 1023 and
 * ⌊y / 1023⌋ = (y · 32801) >> 25 for y < 2^15 (exact there: tested); r1 = 16 becomes 0 with
 * r0 − 1 (Algorithm 36's special case). r in [0, q). */
static void decompose_ct(int32_t r, int32_t *r1, int32_t *r0)
{
	uint32_t y = (uint32_t)(r + GAMMA2 - 1) >> 9;
	int32_t a1 = (int32_t)((y * 32801u) >> 25);
	int32_t a0 = r - a1 * 2 * GAMMA2;
	int32_t is16 = -(int32_t)(((uint32_t)(a1 ^ 16) - 1) >> 31); /* −1 when a1 == 16 */
	*r1 = a1 & ~is16;
	*r0 = a0 + is16; /* − 1 in that case */
}

uint32_t kz_mldsa_div_1023(uint32_t y) { return (y * 32801u) >> 25; }

static inline int32_t centred(int32_t v) { return v - (Q & -(int32_t)((uint32_t)((Q - 1) / 2 - v) >> 31)); }
static inline int32_t absval(int32_t v) { return v ^ ((v ^ -v) & (v >> 31)); }

/* NTT-domain product ĉ ∘ ŝ (both in [0, q)), then back */
static void mul_inv(poly *out, const poly *c_m, const poly *s)
{
	for (unsigned j = 0; j < N; j++)
		out->c[j] = freeze(mont((int64_t)c_m->c[j] * s->c[j]));
	ntt_inv(out);
}

int kz_mldsa65_sign_internal(const uint8_t sk[KZ_MLDSA65_SK_BYTES], const uint8_t *msg, size_t msg_len,
			     const uint8_t rnd[32], uint8_t sig[KZ_MLDSA65_SIG_BYTES])
{
	uint8_t mu[64];
	struct kz_keccak x;
	kz_shake256_init(&x);
	kz_keccak_absorb(&x, sk + 64, 64); /* tr */
	kz_keccak_absorb(&x, msg, msg_len);
	kz_keccak_squeeze(&x, mu, 64);
	return kz_mldsa65_sign_mu(sk, mu, rnd, sig);
}

int kz_mldsa65_sign_mu(const uint8_t sk[KZ_MLDSA65_SK_BYTES], const uint8_t mu_in[64], const uint8_t rnd[32],
		       uint8_t sig[KZ_MLDSA65_SIG_BYTES])
{
	const uint8_t *rho = sk, *key = sk + 32, *tr = sk + 64;
	poly s1[L], s2[K], t0[K], y[L], w[K], c, cm, tmp;
	for (unsigned r = 0; r < L; r++) {
		unpack(&s1[r], 4, sk + 128 + r * 128);
		for (unsigned j = 0; j < N; j++)
			s1[r].c[j] = freeze(ETA - s1[r].c[j]);
		ntt(&s1[r]);
	}
	for (unsigned r = 0; r < K; r++) {
		unpack(&s2[r], 4, sk + 128 + (L + r) * 128);
		unpack(&t0[r], 13, sk + 128 + 32 * (K + L) * 4 + r * 416);
		for (unsigned j = 0; j < N; j++) {
			s2[r].c[j] = freeze(ETA - s2[r].c[j]);
			t0[r].c[j] = freeze((1 << (D - 1)) - t0[r].c[j]);
		}
		ntt(&s2[r]);
		ntt(&t0[r]);
	}
	uint8_t mu[64], rhopp[64], w1enc[K * 128];
	struct kz_keccak x;
	memcpy(mu, mu_in, 64);
	(void)tr;
	kz_shake256_init(&x);
	kz_keccak_absorb(&x, key, 32);
	kz_keccak_absorb(&x, rnd, 32);
	kz_keccak_absorb(&x, mu, 64);
	kz_keccak_squeeze(&x, rhopp, 64);
	poly a[K][L];
	for (unsigned r = 0; r < K; r++)
		for (unsigned s = 0; s < L; s++) {
			rej_ntt_poly(&a[r][s], rho, (uint8_t)s, (uint8_t)r);
			for (unsigned j = 0; j < N; j++)
				a[r][s].c[j] = freeze(mont((int64_t)a[r][s].c[j] * R2)); /* Montgomery form */
		}
	int rc = -1;
	for (uint32_t kappa = 0; kappa < 1000 * L; kappa += L) {
		/* Algorithm 34, ExpandMask: y = γ1 − BitUnpack(H(ρ'' ‖ κ + r, 640)) */
		for (unsigned r = 0; r < L; r++) {
			uint8_t in[66], buf[640];
			memcpy(in, rhopp, 64);
			in[64] = (uint8_t)(kappa + r);
			in[65] = (uint8_t)((kappa + r) >> 8);
			kz_shake256(in, sizeof in, buf, sizeof buf);
			unpack(&y[r], 20, buf);
			for (unsigned j = 0; j < N; j++)
				y[r].c[j] = freeze(GAMMA1 - y[r].c[j] + Q);
		}
		poly yh[L];
		for (unsigned r = 0; r < L; r++) {
			yh[r] = y[r];
			ntt(&yh[r]);
		}
		for (unsigned r = 0; r < K; r++) {
			int32_t acc[N] = { 0 };
			for (unsigned s = 0; s < L; s++)
				for (unsigned j = 0; j < N; j++)
					acc[j] += freeze(mont((int64_t)a[r][s].c[j] * yh[s].c[j]));
			for (unsigned j = 0; j < N; j++) {
				int32_t v = acc[j];
				for (int i = 0; i < L - 1; i++) {
					v -= Q;
					v += Q & (v >> 31);
				}
				w[r].c[j] = v;
			}
			ntt_inv(&w[r]);
			poly w1;
			for (unsigned j = 0; j < N; j++) {
				int32_t r0;
				decompose_ct(w[r].c[j], &w1.c[j], &r0);
			}
			pack(&w1, 4, 0, 0, w1enc + r * 128);
		}
		CT_PUBLIC(w1enc, sizeof w1enc); /* w1 is what the verifier recomputes: public */
		kz_shake256_init(&x);
		kz_keccak_absorb(&x, mu, 64);
		kz_keccak_absorb(&x, w1enc, sizeof w1enc);
		kz_keccak_squeeze(&x, sig, LAMBDA_BYTES);
		sample_in_ball(&c, sig);
		ntt(&c);
		for (unsigned j = 0; j < N; j++)
			cm.c[j] = freeze(mont((int64_t)c.c[j] * R2));
		/* z = y + c·s1; reject when ‖z‖∞ ≥ γ1 − β */
		int32_t bad = 0;
		for (unsigned r = 0; r < L; r++) {
			mul_inv(&tmp, &cm, &s1[r]);
			for (unsigned j = 0; j < N; j++) {
				int32_t z = centred(freeze(y[r].c[j] + tmp.c[j] - Q));
				bad |= (GAMMA1 - BETA - 1 - absval(z)) >> 31;
				y[r].c[j] = z; /* y now holds z, centred */
			}
		}
		/* r0 = LowBits(w − c·s2); reject when ‖r0‖∞ ≥ γ2 − β; w − c·s2 kept in w */
		for (unsigned r = 0; r < K; r++) {
			mul_inv(&tmp, &cm, &s2[r]);
			for (unsigned j = 0; j < N; j++) {
				int32_t r1, r0;
				w[r].c[j] = freeze(w[r].c[j] - tmp.c[j]);
				decompose_ct(w[r].c[j], &r1, &r0);
				bad |= (GAMMA2 - BETA - 1 - absval(r0)) >> 31;
			}
		}
		CT_PUBLIC(&bad, sizeof bad); /* the rejection decision (FIPS 204 §3.6.3) */
		if (bad)
			continue;
		/* hints: h = MakeHint(−c·t0, w − c·s2 + c·t0); reject when ‖c·t0‖∞ ≥ γ2 or > ω ones */
		uint8_t *hp = sig + LAMBDA_BYTES + L * 640;
		memset(hp, 0, OMEGA + K);
		unsigned ones = 0;
		int32_t bad2 = 0;
		uint8_t hbits[K][N];
		for (unsigned r = 0; r < K; r++) {
			mul_inv(&tmp, &cm, &t0[r]);
			for (unsigned j = 0; j < N; j++) {
				int32_t ct0 = centred(tmp.c[j]);
				bad2 |= (GAMMA2 - 1 - absval(ct0)) >> 31;
				int32_t r1a, r1b, r0;
				int32_t rr = freeze(w[r].c[j] + tmp.c[j] - Q); /* w − c·s2 + c·t0 */
				decompose_ct(rr, &r1a, &r0);
				decompose_ct(w[r].c[j], &r1b, &r0); /* (w − c·s2 + c·t0) − c·t0 */
				uint8_t hb = (uint8_t)(((uint32_t)(r1a ^ r1b) | (uint32_t)-(r1a ^ r1b)) >> 31);
				hbits[r][j] = hb;
				ones += hb;
			}
		}
		CT_PUBLIC(&bad2, sizeof bad2);
		CT_PUBLIC(&ones, sizeof ones);
		if (bad2 || ones > OMEGA)
			continue;
		CT_PUBLIC(hbits, sizeof hbits); /* the hint is part of the signature */
		/* Algorithm 20, HintBitPack */
		unsigned index = 0;
		for (unsigned r = 0; r < K; r++) {
			for (unsigned j = 0; j < N; j++)
				if (hbits[r][j])
					hp[index++] = (uint8_t)j;
			hp[OMEGA + r] = (uint8_t)index;
		}
		/* z: BitPack(z, γ1 − 1, γ1) = γ1 − z in 20 bits */
		for (unsigned r = 0; r < L; r++) {
			for (unsigned j = 0; j < N; j++)
				y[r].c[j] = freeze(y[r].c[j] + Q);
			pack(&y[r], 20, GAMMA1, 1, sig + LAMBDA_BYTES + r * 640);
		}
		rc = 0;
		break;
	}
	OPENSSL_cleanse(s1, sizeof s1);
	OPENSSL_cleanse(s2, sizeof s2);
	OPENSSL_cleanse(t0, sizeof t0);
	OPENSSL_cleanse(y, sizeof y);
	OPENSSL_cleanse(w, sizeof w);
	OPENSSL_cleanse(rhopp, sizeof rhopp);
	return rc;
}

int kz_mldsa65_sign(const uint8_t sk[KZ_MLDSA65_SK_BYTES], const uint8_t *msg, size_t msg_len, const uint8_t *ctx,
		    size_t ctx_len, const uint8_t rnd[32], uint8_t sig[KZ_MLDSA65_SIG_BYTES])
{
	uint8_t *m = mprime(msg, msg_len, ctx, ctx_len);
	if (!m)
		return -1;
	int rc = kz_mldsa65_sign_internal(sk, m, 2 + ctx_len + msg_len, rnd, sig);
	free(m);
	return rc;
}
