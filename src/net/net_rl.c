/* net_rl.c — the TLS 1.3 record layer (RFC 8446 §5.2, §7.3) for established server
 * connections, so that OpenSSL's SSL object (with the peer certificate, its chain and the
 * session: ~20 kB) can be freed once the handshake is done. An idle MQTT connection then
 * holds two AEAD contexts and a few dozen bytes of ours (docs/MQTT.md "Memory").
 *
 * The application traffic secrets come from OpenSSL's key-log callback during the handshake
 * (kept in the SSL's ex_data, wiped when taken); keys and IVs are derived here with
 * HKDF-Expand-Label; KeyUpdate (§4.6.3) derives the next secrets. */
#include "net/net.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

struct net_rl {
	BIO *bio;                 /* the connection's net_bio, taken over from the SSL */
	const EVP_MD *md;
	const EVP_CIPHER *cipher;
	size_t key_len, hash_len;
	struct dir {
		EVP_CIPHER_CTX *ctx;
		uint8_t secret[48];
		uint8_t iv[12];
		uint64_t seq;
	} rd, wr;
	char group[32];
};

/* HKDF-Expand-Label(secret, label, "", len) for len <= the hash length (one HMAC block). */
static int expand_label(const EVP_MD *md, const uint8_t *secret, size_t slen, const char *label, uint8_t *out,
			size_t len)
{
	uint8_t info[2 + 1 + 6 + 32 + 1 + 1];
	size_t ll = strlen(label), k = 0;
	info[k++] = (uint8_t)(len >> 8);
	info[k++] = (uint8_t)len;
	info[k++] = (uint8_t)(6 + ll);
	memcpy(info + k, "tls13 ", 6);
	k += 6;
	memcpy(info + k, label, ll);
	k += ll;
	info[k++] = 0; /* empty context */
	info[k++] = 1; /* T(1) = HMAC(secret, info || 0x01) */
	uint8_t t[EVP_MAX_MD_SIZE];
	unsigned tl = 0;
	if (!HMAC(md, secret, (int)slen, info, k, t, &tl) || tl < len)
		return -1;
	memcpy(out, t, len);
	OPENSSL_cleanse(t, sizeof t);
	return 0;
}

static int dir_keys(struct net_rl *rl, struct dir *d, bool enc)
{
	uint8_t key[32];
	if (expand_label(rl->md, d->secret, rl->hash_len, "key", key, rl->key_len) ||
	    expand_label(rl->md, d->secret, rl->hash_len, "iv", d->iv, 12))
		return -1;
	if (!d->ctx && !(d->ctx = EVP_CIPHER_CTX_new()))
		return -1;
	int ok = EVP_CipherInit_ex(d->ctx, rl->cipher, NULL, NULL, NULL, enc) &&
		 EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) &&
		 EVP_CipherInit_ex(d->ctx, NULL, NULL, key, NULL, enc);
	OPENSSL_cleanse(key, sizeof key);
	d->seq = 0;
	return ok ? 0 : -1;
}

static void nonce(const struct dir *d, uint8_t n[12])
{
	memcpy(n, d->iv, 12);
	for (int i = 0; i < 8; i++)
		n[11 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

struct net_rl *net_rl_new(SSL *ssl, const uint8_t *client_secret, const uint8_t *server_secret, size_t len)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	if (!c)
		return NULL;
	struct net_rl *rl = calloc(1, sizeof *rl);
	if (!rl)
		return NULL;
	switch (SSL_CIPHER_get_id(c) & 0xffff) {
	case 0x1301: rl->cipher = EVP_aes_128_gcm(); rl->md = EVP_sha256(); rl->key_len = 16; break;
	case 0x1302: rl->cipher = EVP_aes_256_gcm(); rl->md = EVP_sha384(); rl->key_len = 32; break;
	case 0x1303: rl->cipher = EVP_chacha20_poly1305(); rl->md = EVP_sha256(); rl->key_len = 32; break;
	default: free(rl); return NULL;
	}
	rl->hash_len = (size_t)EVP_MD_get_size(rl->md);
	if (len != rl->hash_len) {
		free(rl);
		return NULL;
	}
	/* the server reads with the client's secret and writes with its own */
	memcpy(rl->rd.secret, client_secret, len);
	memcpy(rl->wr.secret, server_secret, len);
	if (dir_keys(rl, &rl->rd, false) || dir_keys(rl, &rl->wr, true)) {
		net_rl_free(rl);
		return NULL;
	}
	const char *g = SSL_group_to_name(ssl, SSL_get_negotiated_group(ssl));
	snprintf(rl->group, sizeof rl->group, "%s", g ? g : "?");
	return rl;
}

void net_rl_free(struct net_rl *rl)
{
	if (!rl)
		return;
	EVP_CIPHER_CTX_free(rl->rd.ctx);
	EVP_CIPHER_CTX_free(rl->wr.ctx);
	BIO_free(rl->bio);
	OPENSSL_cleanse(rl, sizeof *rl);
	free(rl);
}

void net_rl_set_bio(struct net_rl *rl, BIO *bio) { rl->bio = bio; }
BIO *net_rl_bio(const struct net_rl *rl) { return rl->bio; }
const char *net_rl_group(const struct net_rl *rl) { return rl->group; }

size_t net_rl_seal(struct net_rl *rl, uint8_t type, const uint8_t *p, size_t n, uint8_t *out)
{
	size_t clen = n + 1 + 16;
	out[0] = 0x17; /* application_data outside; the real type is inside (§5.2) */
	out[1] = 0x03;
	out[2] = 0x03;
	out[3] = (uint8_t)(clen >> 8);
	out[4] = (uint8_t)clen;
	uint8_t nc[12];
	nonce(&rl->wr, nc);
	int l = 0, l2 = 0;
	EVP_CIPHER_CTX *x = rl->wr.ctx;
	if (!EVP_EncryptInit_ex(x, NULL, NULL, NULL, nc) || !EVP_EncryptUpdate(x, NULL, &l, out, 5) ||
	    !EVP_EncryptUpdate(x, out + 5, &l, p, (int)n) || !EVP_EncryptUpdate(x, out + 5 + n, &l2, &type, 1) ||
	    !EVP_EncryptFinal_ex(x, out + 5 + n + 1, &l) ||
	    !EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, 16, out + 5 + n + 1))
		return 0;
	rl->wr.seq++;
	return 5 + clen;
}

int net_rl_open(struct net_rl *rl, const uint8_t *rec, size_t reclen, uint8_t *out, size_t *outlen, uint8_t *type)
{
	if (reclen < 5 + 17 || rec[0] != 0x17)
		return -1;
	size_t clen = reclen - 5 - 16;
	uint8_t nc[12];
	nonce(&rl->rd, nc);
	int l = 0;
	EVP_CIPHER_CTX *x = rl->rd.ctx;
	if (!EVP_DecryptInit_ex(x, NULL, NULL, NULL, nc) || !EVP_DecryptUpdate(x, NULL, &l, rec, 5) ||
	    !EVP_DecryptUpdate(x, out, &l, rec + 5, (int)clen) ||
	    !EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, 16, (void *)(rec + 5 + clen)) ||
	    EVP_DecryptFinal_ex(x, out + l, &l) <= 0)
		return -1; /* bad_record_mac */
	rl->rd.seq++;
	/* TLSInnerPlaintext: content, type, zero padding (§5.4) */
	size_t k = clen;
	while (k > 0 && out[k - 1] == 0)
		k--;
	if (k == 0)
		return -1; /* no content type: unexpected_message */
	*type = out[k - 1];
	*outlen = k - 1;
	return 0;
}

int net_rl_key_update(struct net_rl *rl, bool write)
{
	struct dir *d = write ? &rl->wr : &rl->rd;
	uint8_t next[48];
	if (expand_label(rl->md, d->secret, rl->hash_len, "traffic upd", next, rl->hash_len))
		return -1;
	memcpy(d->secret, next, rl->hash_len);
	OPENSSL_cleanse(next, sizeof next);
	return dir_keys(rl, d, write);
}
