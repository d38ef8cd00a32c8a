/* kz_crypto.c — SHA-256 and Ed25519 through OpenSSL 3's EVP interface. */
#include "crypto/kz_crypto.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

void kz_sha256(const void *p, size_t n, uint8_t out[32])
{
	unsigned int len = 32;
	EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

void kz_sha1(const void *p, size_t n, uint8_t out[20])
{
	unsigned int len = 20;
	EVP_Digest(p, n, out, &len, EVP_sha1(), NULL);
}

int kz_ed25519_public(const uint8_t priv[32], uint8_t pub[32])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, 32);
	size_t len = 32;
	int rc = k && EVP_PKEY_get_raw_public_key(k, pub, &len) == 1 && len == 32 ? 0 : -1;
	EVP_PKEY_free(k);
	return rc;
}

int kz_ed25519_keygen(uint8_t priv[32], uint8_t pub[32])
{
	if (RAND_priv_bytes(priv, 32) != 1)
		return -1;
	return kz_ed25519_public(priv, pub);
}

int kz_ed25519_sign(const uint8_t priv[32], const void *msg, size_t n, uint8_t sig[64])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, 32);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	size_t len = 64;
	int rc = k && md && EVP_DigestSignInit(md, NULL, NULL, NULL, k) == 1 &&
			 EVP_DigestSign(md, sig, &len, msg, n) == 1 && len == 64 ? 0 : -1;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
	return rc;
}

int kz_ed25519_verify(const uint8_t pub[32], const void *msg, size_t n, const uint8_t sig[64])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int rc = k && md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, k) == 1 &&
			 EVP_DigestVerify(md, sig, 64, msg, n) == 1 ? 0 : -1;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
	return rc;
}
