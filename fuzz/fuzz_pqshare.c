/* fuzz_pqshare.c — the X25519MLKEM768 key-share decoder through OpenSSL, as libssl uses it on
 * a server: an empty key from parameter generation takes the client's share
 * (EVP_PKEY_set1_encoded_public_key → the provider's §7.2 check), and an accepted share is
 * encapsulated to (1120-byte share, 64-byte secret). First byte 1: the input is the server's
 * share given to a fresh client key for decapsulation instead. */
#include "crypto/kz_provider.h"

#include <assert.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdlib.h>

static EVP_PKEY *gen(int selection)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "X25519MLKEM768", NULL);
	EVP_PKEY *k = NULL;
	OSSL_PARAM p[] = { OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "X25519MLKEM768", 0), OSSL_PARAM_END };
	int ok = c && (selection ? EVP_PKEY_keygen_init(c) : EVP_PKEY_paramgen_init(c)) == 1 &&
		 EVP_PKEY_CTX_set_params(c, p) == 1 && (selection ? EVP_PKEY_keygen(c, &k) : EVP_PKEY_paramgen(c, &k)) == 1;
	EVP_PKEY_CTX_free(c);
	if (!ok)
		abort();
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	if (!ready) {
		if (kz_provider_load())
			abort();
		ready = 1;
	}
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	if (data[0] & 1) {
		EVP_PKEY *k = gen(1);
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
		unsigned char secret[64];
		size_t sl = sizeof secret;
		int r = c && EVP_PKEY_decapsulate_init(c, NULL) == 1 ? EVP_PKEY_decapsulate(c, secret, &sl, p, n) : 0;
		assert(r != 1 || (n == 1120 && sl == 64));
		EVP_PKEY_CTX_free(c);
		EVP_PKEY_free(k);
	} else {
		EVP_PKEY *k = gen(0);
		if (EVP_PKEY_set1_encoded_public_key(k, p, n) == 1) {
			assert(n == 1216);
			EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
			unsigned char ct[1120], secret[64];
			size_t cl = sizeof ct, sl = sizeof secret;
			assert(c && EVP_PKEY_encapsulate_init(c, NULL) == 1 &&
			       EVP_PKEY_encapsulate(c, ct, &cl, secret, &sl) == 1 && cl == 1120 && sl == 64);
			EVP_PKEY_CTX_free(c);
		}
		EVP_PKEY_free(k);
	}
	ERR_clear_error();
	return 0;
}
