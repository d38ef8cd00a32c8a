/* ca_enroll.c — enrolment tokens (single use, expiring) and enrolment: a token and a CSR
 * in, a certificate out (docs/CA.md). */
#include "trust/ca_internal.h"
#include "base/kz_base64.h"
#include "base/kz_err.h"
#include "base/kz_file.h"
#include "base/kz_hex.h"
#include "crypto/kz_crypto.h"
#include "crypto/kz_provider.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------- enrolment tokens ---------- */

int kz_ca_parse_token(const char *p, size_t n, struct kz_ca_token *t)
{
	const char *f[5];
	size_t fl[5], k = 0, start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || p[i] == '\t') {
			if (k == 5)
				return -1;
			f[k] = p + start;
			fl[k++] = i - start;
			start = i + 1;
		}
	}
	int64_t life;
	if (k != 5 || fl[0] != 64 || kz_ca_parse_i64(f[1], fl[1], &t->expires) || kz_ca_parse_i64(f[2], fl[2], &life) ||
	    life <= 0 || life > UINT32_MAX || kz_ca_parse_i64(f[3], fl[3], &t->used_at) || fl[4] >= sizeof t->id ||
	    kz_spiffe_check(f[4], fl[4], NULL))
		return -1;
	for (size_t i = 0; i < 64; i++)
		if (!isxdigit((unsigned char)f[0][i]) || isupper((unsigned char)f[0][i]))
			return -1;
	memcpy(t->hash, f[0], 64);
	t->hash[64] = 0;
	t->lifetime = (uint32_t)life;
	memcpy(t->id, f[4], fl[4]);
	t->id[fl[4]] = 0;
	return 0;
}

/* Loads the tokens, dropping those expired (they can never be used again). */
static int tokens_load(const struct kz_ca *ca, struct kz_ca_token **out, size_t *n_out, char *why, size_t why_len)
{
	char *b;
	size_t len, n = 0, line = 0;
	*out = NULL;
	*n_out = 0;
	int rc = kz_ca_file_read(ca->dir, "tokens", &b, &len);
	if (rc) {
		snprintf(why, why_len, "%s/tokens: %s", ca->dir, kz_strerror(rc));
		return rc;
	}
	size_t lines = 0;
	for (size_t i = 0; i < len; i++)
		lines += b[i] == '\n';
	struct kz_ca_token *v = calloc(lines + 1, sizeof *v);
	if (!v) {
		free(b);
		return KZ_ENOMEM;
	}
	int64_t now = (int64_t)time(NULL);
	for (char *p = b; *p;) {
		char *nl = strchr(p, '\n');
		line++;
		if (!nl || kz_ca_parse_token(p, (size_t)(nl - p), &v[n])) {
			snprintf(why, why_len, "%s/tokens:%zu: malformed line", ca->dir, line);
			free(v);
			free(b);
			return KZ_EMALFORMED;
		}
		if (v[n].expires > now)
			n++;
		p = nl + 1;
	}
	free(b);
	*out = v;
	*n_out = n;
	return KZ_OK;
}

static int tokens_store(const struct kz_ca *ca, const struct kz_ca_token *v, size_t n)
{
	char *b = malloc(n * 2300 + 1);
	size_t len = 0;
	if (!b)
		return KZ_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		char used[24] = "-";
		if (v[i].used_at)
			snprintf(used, sizeof used, "%lld", (long long)v[i].used_at);
		len += (size_t)sprintf(b + len, "%s\t%lld\t%u\t%s\t%s\n", v[i].hash, (long long)v[i].expires,
				       v[i].lifetime, used, v[i].id);
	}
	int rc = kz_file_replace(ca->dir, "tokens", b, len, 0600);
	free(b);
	return rc;
}

static void token_hash(const char *tok, size_t n, char hex[65])
{
	uint8_t h[32];
	kz_sha256(tok, n, h);
	kz_hex(h, sizeof h, hex);
}

int kz_ca_token(struct kz_ca *ca, const char *id, uint32_t ttl_s, uint32_t lifetime_s, char token_out[KZ_TOKEN_LEN],
		char *why, size_t why_len)
{
	const char *bad = kz_spiffe_check(id, strlen(id), ca->td[0] ? ca->td : NULL);
	if (bad) {
		snprintf(why, why_len, "%s: %s", id, bad);
		return KZ_EINVAL;
	}
	if (!ttl_s || !lifetime_s) {
		snprintf(why, why_len, "the token's time to live and the certificate's lifetime must be positive");
		return KZ_EINVAL;
	}
	uint8_t raw[32];
	char b64[48];
	if (RAND_bytes(raw, sizeof raw) != 1) {
		snprintf(why, why_len, "no randomness");
		return KZ_ETLS;
	}
	kz_base64(raw, sizeof raw, b64);
	/* base64url without padding (RFC 4648 §5): safe on a command line and in a URL */
	size_t k = 0;
	memcpy(token_out, "kzt1_", 5);
	for (size_t i = 0; b64[i] && b64[i] != '='; i++)
		token_out[5 + k++] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	token_out[5 + k] = 0;
	struct kz_ca_token t = { .expires = (int64_t)time(NULL) + ttl_s, .lifetime = lifetime_s };
	token_hash(token_out, 5 + k, t.hash);
	snprintf(t.id, sizeof t.id, "%s", id);
	int lk = kz_ca_lock(ca, why, why_len);
	if (lk < 0)
		return KZ_EIO;
	struct kz_ca_token *v;
	size_t n;
	int rc = tokens_load(ca, &v, &n, why, why_len);
	if (!rc) {
		v[n++] = t; /* tokens_load left a spare slot */
		rc = tokens_store(ca, v, n);
		if (rc)
			snprintf(why, why_len, "cannot write %s/tokens: %s", ca->dir, strerror(errno));
		free(v);
	}
	close(lk);
	OPENSSL_cleanse(raw, sizeof raw);
	return rc;
}

/* Finds the token and marks it used (durably) before a certificate is issued for it: a crash
 * in between burns the token rather than letting it be used twice. */
static int token_consume(struct kz_ca *ca, const char *tok, size_t n, struct kz_ca_token *got, const char **code,
			 char *why, size_t why_len)
{
	char hex[65];
	token_hash(tok, n, hex);
	int lk = kz_ca_lock(ca, why, why_len);
	if (lk < 0) {
		*code = "internal";
		return KZ_EIO;
	}
	struct kz_ca_token *v;
	size_t nv;
	int rc = tokens_load(ca, &v, &nv, why, why_len);
	if (rc) {
		*code = "internal";
		close(lk);
		return rc;
	}
	rc = KZ_ENOTFOUND;
	*code = "token-unknown";
	snprintf(why, why_len, "unknown or expired enrolment token");
	for (size_t i = 0; i < nv; i++) {
		if (CRYPTO_memcmp(v[i].hash, hex, 64) != 0)
			continue;
		*got = v[i];
		if (v[i].used_at) {
			*code = "token-used";
			snprintf(why, why_len, "enrolment token was already used");
			rc = KZ_EDENIED;
			break;
		}
		v[i].used_at = (int64_t)time(NULL);
		rc = tokens_store(ca, v, nv);
		if (rc) {
			*code = "internal";
			snprintf(why, why_len, "cannot record the token's use");
		}
		break;
	}
	free(v);
	close(lk);
	return rc;
}

/* ---------- enrolment ---------- */

int kz_enroll_parse(const char *buf, size_t n, const char **token, size_t *token_len, const char **csr,
		    size_t *csr_len, const char **why)
{
	static const char head[] = "ENROLL ", tail[] = "-----END CERTIFICATE REQUEST-----";
	size_t hn = sizeof head - 1;
	if (memcmp(buf, head, n < hn ? n : hn) != 0) {
		*why = "request does not start with ENROLL";
		return -1;
	}
	const char *nl = memchr(buf, '\n', n);
	if (!nl)
		return n > hn + 128 ? (*why = "token line too long", -1) : 1;
	*token = buf + hn;
	*token_len = (size_t)(nl - buf) - hn;
	if (*token_len && (*token)[*token_len - 1] == '\r')
		(*token_len)--;
	if (*token_len == 0 || *token_len > 128) {
		*why = "bad token length";
		return -1;
	}
	for (size_t i = 0; i < *token_len; i++)
		if (!isalnum((unsigned char)(*token)[i]) && (*token)[i] != '-' && (*token)[i] != '_') {
			*why = "token has a character outside [A-Za-z0-9_-]";
			return -1;
		}
	const char *p = nl + 1;
	size_t rest = n - (size_t)(p - buf);
	static const char begin[] = "-----BEGIN CERTIFICATE REQUEST-----";
	size_t bn = sizeof begin - 1;
	if (memcmp(p, begin, rest < bn ? rest : bn) != 0) {
		*why = "expected a PEM certificate request after the token line";
		return -1;
	}
	/* the request ends with the first END line; only bytes up to it are the request's */
	size_t tn = sizeof tail - 1, end = rest;
	bool found = false;
	for (size_t i = bn; i + tn <= rest && !found; i++) {
		if (memcmp(p + i, tail, tn) == 0) {
			end = i + tn;
			found = true;
		}
	}
	for (size_t i = 0; i < end; i++)
		if ((unsigned char)p[i] >= 0x7f || (p[i] < 0x20 && p[i] != '\n' && p[i] != '\r')) {
			*why = "certificate request is not PEM text";
			return -1;
		}
	if (!found)
		return 1;
	*csr = p;
	*csr_len = end;
	return 0;
}

char *kz_enroll_serve(struct kz_ca *ca, const char *tok, size_t tok_len, const char *csr_pem, size_t csr_len,
		      uint32_t max_lifetime_s, bool *allowed, char id[2100], char *reason, size_t reason_len)
{
	*allowed = false;
	id[0] = 0;
	const char *code = "csr-invalid";
	char *answer = NULL;
	X509_REQ *req = NULL;
	X509 *c = NULL;
	BIO *in = BIO_new_mem_buf(csr_pem, (int)csr_len);
	req = in ? PEM_read_bio_X509_REQ(in, NULL, NULL, NULL) : NULL;
	BIO_free(in);
	EVP_PKEY *pub = req ? X509_REQ_get0_pubkey(req) : NULL;
	if (!req || !pub) {
		snprintf(reason, reason_len, "certificate request does not parse");
		goto refuse;
	}
	char group[32] = "";
	size_t gl = 0;
	if (!EVP_PKEY_is_a(pub, "EC") || !EVP_PKEY_get_group_name(pub, group, sizeof group, &gl) ||
	    strcmp(group, "prime256v1") != 0) {
		snprintf(reason, reason_len, "certificate request key is not ECDSA P-256");
		goto refuse;
	}
	if (X509_REQ_verify(req, pub) != 1) {
		snprintf(reason, reason_len, "certificate request signature does not verify (no proof of possession)");
		goto refuse;
	}
	struct kz_ca_token t;
	if (token_consume(ca, tok, tok_len, &t, &code, reason, reason_len))
		goto refuse;
	snprintf(id, 2100, "%s", t.id);
	uint32_t life = t.lifetime;
	if (max_lifetime_s && life > max_lifetime_s)
		life = max_lifetime_s;
	code = "internal";
	c = kz_ca_issue_for(ca, t.id, pub, life, NULL, reason, reason_len);
	if (!c)
		goto refuse;
	BIO *out = BIO_new(BIO_s_mem());
	char *data;
	long len;
	if (!out || BIO_puts(out, "OK\n") != 3 || !PEM_write_bio_X509(out, c) || !PEM_write_bio_X509(out, ca->cert) ||
	    (len = BIO_get_mem_data(out, &data)) <= 0 || !(answer = malloc((size_t)len + 1))) {
		BIO_free(out);
		snprintf(reason, reason_len, "cannot encode the certificate");
		goto refuse;
	}
	memcpy(answer, data, (size_t)len);
	answer[len] = 0;
	BIO_free(out);
	char serial[KZ_SERIAL_HEX];
	kz_x509_serial_hex(c, serial);
	snprintf(reason, reason_len, "enrolled: certificate %s valid %u s", serial, life);
	*allowed = true;
	X509_free(c);
	X509_REQ_free(req);
	return answer;
refuse:
	X509_free(c);
	X509_REQ_free(req);
	size_t n = strlen(code) + strlen(reason) + 16;
	answer = malloc(n);
	if (answer)
		snprintf(answer, n, "ERROR %s %s\n", code, reason);
	return answer;
}

int kz_enroll_client(const char *host, int port, const char *ca_file, const char *token, const char *out_dir,
		     char *id_out, size_t id_len, char *why, size_t why_len)
{
	int rc = KZ_ETLS;
	(void)kz_provider_load(); /* X25519MLKEM768 (docs/PQC.md); without it X25519 still works */
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509_REQ *req = X509_REQ_new();
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	BIO *bio = NULL, *mem = BIO_new(BIO_s_mem());
	X509 *leaf = NULL, *cac = NULL;
	char *resp = NULL;
	id_out[0] = 0;
	if (!k || !req || !ctx || !mem || !X509_REQ_set_version(req, 0) || !X509_REQ_set_pubkey(req, k) ||
	    !X509_REQ_sign(req, k, EVP_sha256())) {
		snprintf(why, why_len, "cannot make a key and a certificate request");
		goto out;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set1_groups_list(ctx, "X25519MLKEM768:X25519:P-256"); /* the provider was loaded first */
	if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		snprintf(why, why_len, "cannot load the CA certificate %s", ca_file);
		goto out;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	static const unsigned char alpn[] = "\x0f" KZ_ENROLL_ALPN;
	SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
	bio = BIO_new_ssl_connect(ctx);
	SSL *ssl = NULL;
	char addr[600];
	snprintf(addr, sizeof addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	if (!bio || BIO_get_ssl(bio, &ssl) != 1 || !ssl) {
		snprintf(why, why_len, "cannot set up TLS");
		goto out;
	}
	BIO_set_conn_hostname(bio, addr);
	SSL_set_tlsext_host_name(ssl, host);
	SSL_set1_host(ssl, host);
	if (BIO_do_connect(bio) <= 0 || BIO_do_handshake(bio) <= 0) {
		char e[256];
		ERR_error_string_n(ERR_get_error(), e, sizeof e);
		snprintf(why, why_len, "cannot connect to %s with TLS: %s", addr, e);
		goto out;
	}
	const unsigned char *sel;
	unsigned sel_len;
	SSL_get0_alpn_selected(ssl, &sel, &sel_len);
	if (sel_len != strlen(KZ_ENROLL_ALPN) || memcmp(sel, KZ_ENROLL_ALPN, sel_len) != 0) {
		snprintf(why, why_len, "%s does not offer enrolment (ALPN %s)", addr, KZ_ENROLL_ALPN);
		goto out;
	}
	BIO_printf(mem, "ENROLL %s\n", token);
	PEM_write_bio_X509_REQ(mem, req);
	char *data;
	long len = BIO_get_mem_data(mem, &data);
	if (BIO_write(bio, data, (int)len) != len || BIO_flush(bio) != 1) {
		snprintf(why, why_len, "cannot send the request to %s", addr);
		goto out;
	}
	size_t cap = 65536, n = 0;
	resp = malloc(cap);
	if (!resp)
		goto out;
	for (;;) {
		int r = BIO_read(bio, resp + n, (int)(cap - n - 1));
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n + 1 >= cap)
			break;
	}
	resp[n] = 0;
	if (strncmp(resp, "ERROR ", 6) == 0) {
		char *e = strchr(resp, '\n');
		if (e)
			*e = 0;
		snprintf(why, why_len, "the node refused: %s", resp + 6);
		rc = KZ_EDENIED;
		goto out;
	}
	if (strncmp(resp, "OK\n", 3) != 0) {
		snprintf(why, why_len, "unexpected answer from %s", addr);
		goto out;
	}
	BIO *rb = BIO_new_mem_buf(resp + 3, (int)(n - 3));
	leaf = rb ? PEM_read_bio_X509(rb, NULL, NULL, NULL) : NULL;
	cac = leaf ? PEM_read_bio_X509(rb, NULL, NULL, NULL) : NULL;
	BIO_free(rb);
	char *id = leaf ? kz_ca_cert_uri(leaf) : NULL;
	if (!cac || !id || X509_check_private_key(leaf, k) != 1 || X509_verify(leaf, X509_get0_pubkey(cac)) != 1) {
		free(id);
		snprintf(why, why_len, "the node's answer does not hold a certificate for our key signed by its CA");
		goto out;
	}
	snprintf(id_out, id_len, "%s", id);
	free(id);
	if (mkdir(out_dir, 0700) && errno != EEXIST) {
		snprintf(why, why_len, "cannot create %s: %s", out_dir, strerror(errno));
		rc = KZ_EIO;
		goto out;
	}
	char p1[1200], p2[1200], p3[1200];
	kz_ca_path_of(p1, sizeof p1, out_dir, "key.pem");
	kz_ca_path_of(p2, sizeof p2, out_dir, "cert.pem");
	kz_ca_path_of(p3, sizeof p3, out_dir, "ca.pem");
	rc = kz_ca_write_pem_file(p1, NULL, k);
	rc = rc ? rc : kz_ca_write_pem_file(p2, leaf, NULL);
	rc = rc ? rc : kz_ca_write_pem_file(p3, cac, NULL);
	if (rc)
		snprintf(why, why_len, "cannot write into %s: %s", out_dir, strerror(errno));
out:
	free(resp);
	X509_free(leaf);
	X509_free(cac);
	BIO_free_all(bio);
	BIO_free(mem);
	SSL_CTX_free(ctx);
	X509_REQ_free(req);
	EVP_PKEY_free(k);
	return rc;
}

