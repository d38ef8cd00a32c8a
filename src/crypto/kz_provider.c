/* kz_provider.c — an OpenSSL 3 provider ("kizuna") with one TLS group, X25519MLKEM768
 * (draft-ietf-tls-ecdhe-mlkem, codepoint 0x11EC): a key-management and a KEM implementation
 * combining ML-KEM-768 (kz_mlkem.c) with X25519 (through libcrypto).
 *
 *   client key share  = ML-KEM-768 ek (1184) ‖ X25519 public (32)      = 1216 bytes
 *   server key share  = ML-KEM-768 ciphertext (1088) ‖ X25519 public (32) = 1120 bytes
 *   shared secret     = ML-KEM-768 K (32) ‖ X25519 shared secret (32)    = 64 bytes
 *
 * libssl 3.0 drives it so (docs/PQC.md): the client generates a key (gen with "group") and
 * sends get_params("encoded-pub-key"); the server makes an empty key (parameter-only gen),
 * sets the client's share with set_params("encoded-pub-key") — where the FIPS 203 §7.2 check
 * runs and the X25519 half is computed, so that an invalid ML-KEM key or a low-order X25519
 * point aborts the handshake with illegal_parameter — and encapsulates; the client
 * decapsulates the server's share.
 *
 * Registered in-process with OSSL_PROVIDER_add_builtin (kz_provider_load), and built as a
 * loadable module (OSSL_provider_init, kizuna-pqc.so) for openssl s_client/s_server. */
#include "crypto/kz_provider.h"
#include "crypto/kz_mlkem.h"

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <string.h>

#define ALG "X25519MLKEM768"
#define X_LEN 32
#define CLIENT_SHARE (KZ_MLKEM768_EK_BYTES + X_LEN)
#define SERVER_SHARE (KZ_MLKEM768_CT_BYTES + X_LEN)
#define SECRET_LEN (KZ_MLKEM_SS_BYTES + X_LEN)

struct hkey {
	bool has_pub, has_priv;
	uint8_t ek[KZ_MLKEM768_EK_BYTES];
	uint8_t dk[KZ_MLKEM768_DK_BYTES];
	uint8_t x_pub[X_LEN], x_priv[X_LEN];
	/* server side: the X25519 half done when the client's share is set (so that a low-order
	 * point is refused there, as illegal_parameter), used once by the next encapsulation */
	bool has_x_done;
	uint8_t x_srv_pub[X_LEN], x_shared[X_LEN];
};

/* ---------- X25519 through libcrypto ---------- */

static int x25519_keygen(uint8_t priv[X_LEN], uint8_t pub[X_LEN])
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	size_t a = X_LEN, b = X_LEN;
	int ok = k && EVP_PKEY_get_raw_private_key(k, priv, &a) == 1 && EVP_PKEY_get_raw_public_key(k, pub, &b) == 1 &&
		 a == X_LEN && b == X_LEN;
	EVP_PKEY_free(k);
	return ok ? 0 : -1;
}

/* OpenSSL's X25519 refuses an all-zero result (a low-order peer point). */
static int x25519(const uint8_t priv[X_LEN], const uint8_t peer[X_LEN], uint8_t out[X_LEN])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, X_LEN);
	EVP_PKEY *p = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, X_LEN);
	EVP_PKEY_CTX *c = k ? EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL) : NULL;
	size_t n = X_LEN;
	int ok = c && p && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, p) == 1 &&
		 EVP_PKEY_derive(c, out, &n) == 1 && n == X_LEN;
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(p);
	EVP_PKEY_free(k);
	return ok ? 0 : -1;
}

/* ---------- key management ---------- */

static void *km_new(void *provctx)
{
	(void)provctx;
	return OPENSSL_zalloc(sizeof(struct hkey));
}

static void km_free(void *key)
{
	OPENSSL_clear_free(key, sizeof(struct hkey));
}

static int km_has(const void *key, int selection)
{
	const struct hkey *k = key;
	if (!k)
		return 0;
	if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) && !k->has_pub)
		return 0;
	if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && !k->has_priv)
		return 0;
	return 1;
}

struct gen_ctx {
	int selection;
};

static void *km_gen_init(void *provctx, int selection, const OSSL_PARAM params[])
{
	(void)provctx;
	(void)params;
	struct gen_ctx *g = OPENSSL_zalloc(sizeof *g);
	if (g)
		g->selection = selection;
	return g;
}

static int km_gen_set_params(void *genctx, const OSSL_PARAM params[])
{
	(void)genctx;
	const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME);
	if (p && (p->data_type != OSSL_PARAM_UTF8_STRING || strcmp(p->data, ALG) != 0))
		return 0;
	return 1;
}

static const OSSL_PARAM *km_gen_settable_params(void *genctx, void *provctx)
{
	(void)genctx;
	(void)provctx;
	static const OSSL_PARAM t[] = { OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0), OSSL_PARAM_END };
	return t;
}

static void *km_gen(void *genctx, OSSL_CALLBACK *cb, void *cbarg)
{
	(void)cb;
	(void)cbarg;
	struct gen_ctx *g = genctx;
	struct hkey *k = OPENSSL_zalloc(sizeof *k);
	if (!k)
		return NULL;
	/* parameter-only generation (the server side): an empty key that will take the peer's share */
	if (!(g->selection & OSSL_KEYMGMT_SELECT_KEYPAIR))
		return k;
	if (kz_mlkem768_keygen(k->ek, k->dk) || x25519_keygen(k->x_priv, k->x_pub)) {
		km_free(k);
		return NULL;
	}
	k->has_pub = k->has_priv = true;
	return k;
}

static void km_gen_cleanup(void *genctx) { OPENSSL_free(genctx); }

static int km_get_params(void *key, OSSL_PARAM params[])
{
	struct hkey *k = key;
	OSSL_PARAM *p;
	if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_BITS)) && !OSSL_PARAM_set_int(p, 8 * CLIENT_SHARE))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_SECURITY_BITS)) && !OSSL_PARAM_set_int(p, 192))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_MAX_SIZE)) && !OSSL_PARAM_set_int(p, CLIENT_SHARE))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY))) {
		if (!k->has_pub)
			return 0;
		uint8_t share[CLIENT_SHARE];
		memcpy(share, k->ek, KZ_MLKEM768_EK_BYTES);
		memcpy(share + KZ_MLKEM768_EK_BYTES, k->x_pub, X_LEN);
		if (!OSSL_PARAM_set_octet_string(p, share, sizeof share))
			return 0;
	}
	return 1;
}

static const OSSL_PARAM *km_gettable_params(void *provctx)
{
	(void)provctx;
	static const OSSL_PARAM t[] = { OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
					OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
					OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
					OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0), OSSL_PARAM_END };
	return t;
}

/* The peer's client share: refused (and so the handshake, with illegal_parameter) unless it
 * is exactly 1216 bytes and its ML-KEM part passes the §7.2 encapsulation key check. */
static int km_set_params(void *key, const OSSL_PARAM params[])
{
	struct hkey *k = key;
	const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY);
	if (!p)
		return 1;
	const void *data;
	size_t n;
	if (!OSSL_PARAM_get_octet_string_ptr(p, &data, &n) || n != CLIENT_SHARE ||
	    kz_mlkem768_check_ek(data, KZ_MLKEM768_EK_BYTES) != 0)
		return 0;
	/* RFC 8446 §7.4.2: an all-zero X25519 result is refused (OpenSSL's derive does) */
	uint8_t xpriv[X_LEN];
	int bad = x25519_keygen(xpriv, k->x_srv_pub) ||
		  x25519(xpriv, (const uint8_t *)data + KZ_MLKEM768_EK_BYTES, k->x_shared);
	OPENSSL_cleanse(xpriv, sizeof xpriv);
	if (bad)
		return 0;
	memcpy(k->ek, data, KZ_MLKEM768_EK_BYTES);
	memcpy(k->x_pub, (const uint8_t *)data + KZ_MLKEM768_EK_BYTES, X_LEN);
	k->has_pub = true;
	k->has_priv = false;
	k->has_x_done = true;
	return 1;
}

static const OSSL_PARAM *km_settable_params(void *provctx)
{
	(void)provctx;
	static const OSSL_PARAM t[] = { OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
					OSSL_PARAM_END };
	return t;
}

static const OSSL_DISPATCH keymgmt_fns[] = {
	{ OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))km_new },
	{ OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))km_free },
	{ OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))km_has },
	{ OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))km_gen_init },
	{ OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))km_gen_set_params },
	{ OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, (void (*)(void))km_gen_settable_params },
	{ OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))km_gen },
	{ OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))km_gen_cleanup },
	{ OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))km_get_params },
	{ OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))km_gettable_params },
	{ OSSL_FUNC_KEYMGMT_SET_PARAMS, (void (*)(void))km_set_params },
	{ OSSL_FUNC_KEYMGMT_SETTABLE_PARAMS, (void (*)(void))km_settable_params },
	{ 0, NULL },
};

/* ---------- KEM ---------- */

struct kem_ctx {
	struct hkey *key;
};

static void *kem_newctx(void *provctx)
{
	(void)provctx;
	return OPENSSL_zalloc(sizeof(struct kem_ctx));
}

static void kem_freectx(void *ctx) { OPENSSL_free(ctx); }

static int kem_init(void *ctx, void *key, const OSSL_PARAM params[])
{
	(void)params;
	struct kem_ctx *c = ctx;
	c->key = key;
	return key != NULL;
}

/* Server: ciphertext ‖ our X25519 public; secret = K ‖ X25519(ours, client's) */
static int kem_encapsulate(void *ctx, unsigned char *out, size_t *outlen, unsigned char *secret, size_t *secretlen)
{
	struct kem_ctx *c = ctx;
	if (!out || !secret) {
		if (outlen)
			*outlen = SERVER_SHARE;
		if (secretlen)
			*secretlen = SECRET_LEN;
		return 1;
	}
	if (!c->key || !c->key->has_pub || (outlen && *outlen < SERVER_SHARE) || (secretlen && *secretlen < SECRET_LEN))
		return 0;
	uint8_t m[32], xpriv[X_LEN];
	struct hkey *k = c->key;
	int ok = RAND_priv_bytes(m, sizeof m) == 1;
	if (ok && k->has_x_done) { /* computed when the share was set; used once */
		memcpy(out + KZ_MLKEM768_CT_BYTES, k->x_srv_pub, X_LEN);
		memcpy(secret + KZ_MLKEM_SS_BYTES, k->x_shared, X_LEN);
		OPENSSL_cleanse(k->x_shared, X_LEN);
		k->has_x_done = false;
	} else if (ok) {
		ok = x25519_keygen(xpriv, out + KZ_MLKEM768_CT_BYTES) == 0 &&
		     x25519(xpriv, k->x_pub, secret + KZ_MLKEM_SS_BYTES) == 0;
	}
	if (ok)
		kz_mlkem768_encaps_m(c->key->ek, m, out, secret);
	OPENSSL_cleanse(m, sizeof m);
	OPENSSL_cleanse(xpriv, sizeof xpriv);
	if (!ok)
		return 0;
	if (outlen)
		*outlen = SERVER_SHARE;
	if (secretlen)
		*secretlen = SECRET_LEN;
	return 1;
}

/* Client: the server's share → K ‖ X25519(ours, server's) */
static int kem_decapsulate(void *ctx, unsigned char *out, size_t *outlen, const unsigned char *in, size_t inlen)
{
	struct kem_ctx *c = ctx;
	if (!out) {
		if (outlen)
			*outlen = SECRET_LEN;
		return 1;
	}
	if (!c->key || !c->key->has_priv || inlen != SERVER_SHARE || (outlen && *outlen < SECRET_LEN))
		return 0;
	if (x25519(c->key->x_priv, in + KZ_MLKEM768_CT_BYTES, out + KZ_MLKEM_SS_BYTES))
		return 0;
	kz_mlkem768_decaps(c->key->dk, in, out);
	if (outlen)
		*outlen = SECRET_LEN;
	return 1;
}

static const OSSL_DISPATCH kem_fns[] = {
	{ OSSL_FUNC_KEM_NEWCTX, (void (*)(void))kem_newctx },
	{ OSSL_FUNC_KEM_FREECTX, (void (*)(void))kem_freectx },
	{ OSSL_FUNC_KEM_ENCAPSULATE_INIT, (void (*)(void))kem_init },
	{ OSSL_FUNC_KEM_ENCAPSULATE, (void (*)(void))kem_encapsulate },
	{ OSSL_FUNC_KEM_DECAPSULATE_INIT, (void (*)(void))kem_init },
	{ OSSL_FUNC_KEM_DECAPSULATE, (void (*)(void))kem_decapsulate },
	{ 0, NULL },
};

/* ---------- the provider ---------- */

static const OSSL_ALGORITHM keymgmt_algs[] = { { ALG, "provider=kizuna", keymgmt_fns, "X25519 + ML-KEM-768 hybrid" },
					       { NULL, NULL, NULL, NULL } };
static const OSSL_ALGORITHM kem_algs[] = { { ALG, "provider=kizuna", kem_fns, "X25519 + ML-KEM-768 hybrid" },
					   { NULL, NULL, NULL, NULL } };

static const OSSL_ALGORITHM *query(void *provctx, int op, int *no_cache)
{
	(void)provctx;
	*no_cache = 0;
	return op == OSSL_OP_KEYMGMT ? keymgmt_algs : op == OSSL_OP_KEM ? kem_algs : NULL;
}

static unsigned int group_id = KZ_TLS_GROUP_X25519MLKEM768, sec_bits = 192, is_kem = 1;
static int min_tls = 0x0304, max_tls = 0, min_dtls = -1, max_dtls = -1;

static int get_capabilities(void *provctx, const char *capability, OSSL_CALLBACK *cb, void *arg)
{
	(void)provctx;
	if (strcmp(capability, "TLS-GROUP") != 0)
		return 1;
	OSSL_PARAM p[] = {
		OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME, ALG, sizeof ALG),
		OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME_INTERNAL, ALG, sizeof ALG),
		OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_ID, &group_id),
		OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_ALG, ALG, sizeof ALG),
		OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_SECURITY_BITS, &sec_bits),
		OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_TLS, &min_tls),
		OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_TLS, &max_tls),
		OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_DTLS, &min_dtls),
		OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_DTLS, &max_dtls),
		OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_IS_KEM, &is_kem),
		OSSL_PARAM_END,
	};
	return cb(p, arg);
}

static const OSSL_DISPATCH provider_fns[] = {
	{ OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))query },
	{ OSSL_FUNC_PROVIDER_GET_CAPABILITIES, (void (*)(void))get_capabilities },
	{ 0, NULL },
};

int kz_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in, const OSSL_DISPATCH **out, void **provctx)
{
	(void)handle;
	(void)in;
	*out = provider_fns;
	*provctx = NULL;
	return 1;
}

#ifdef KZ_PROVIDER_MODULE
/* The entry point of the loadable module (openssl … -provider-path DIR -provider kizuna-pqc). */
OPENSSL_EXPORT int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
				      const OSSL_DISPATCH **out, void **provctx);
int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in, const OSSL_DISPATCH **out,
		       void **provctx)
{
	return kz_provider_init(handle, in, out, provctx);
}
#endif

int kz_provider_load(void)
{
	/* kept for the life of the process (OpenSSL's own cleanup at exit releases them) */
	static OSSL_PROVIDER *ours, *dflt;
	if (ours)
		return 0;
	/* Loading any provider explicitly ends the implicit "default" one: load it too. */
	if (!OSSL_PROVIDER_add_builtin(NULL, "kizuna", kz_provider_init) || !(dflt = OSSL_PROVIDER_load(NULL, "default")) ||
	    !(ours = OSSL_PROVIDER_load(NULL, "kizuna")))
		return -1;
	return 0;
}
