/* net_tls.c — OpenSSL contexts for mutual TLS 1.3 and SPIFFE identity extraction. */
#include "net/net.h"
#include "base/kz_hex.h"
#include "base/kz_err.h"
#include "trust/ca.h"
#include "crypto/kz_provider.h"
#include "base/kz_time.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>


const char *net_tls_peer(SSL *ssl, struct net_peer *p)
{
	memset(p, 0, sizeof *p);
	const char *why = NULL;
	p->id = net_tls_peer_spiffe(ssl, &why);
	X509 *cert = SSL_get0_peer_certificate(ssl);
	if (cert) {
		_Static_assert(sizeof p->serial >= KZ_SERIAL_HEX, "room for the serial");
		kz_x509_serial_hex(cert, p->serial);
		X509_NAME_oneline(X509_get_issuer_name(cert), p->issuer, sizeof p->issuer);
		struct tm tm;
		if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
			p->not_after = (int64_t)timegm(&tm);
	}
	return p->id ? NULL : why;
}

void net_tls_errors(char *buf, size_t len)
{
	size_t n = 0;
	buf[0] = 0;
	unsigned long e;
	while ((e = ERR_get_error()) != 0 && n + 2 < len) {
		if (n)
			buf[n++] = ';', buf[n] = 0;
		ERR_error_string_n(e, buf + n, len - n);
		n = strlen(buf);
	}
	if (n == 0)
		snprintf(buf, len, "unknown TLS error");
}

static SSL_CTX *ctx_common(const SSL_METHOD *m, const struct net_tls_config *cfg, char *why,
			   size_t why_len)
{
	char err[256];
	/* the provider with X25519MLKEM768 must be in the library context before the SSL_CTX
	 * (libssl discovers provider groups when the context is made) */
	if (kz_provider_load()) {
		net_tls_errors(err, sizeof err);
		snprintf(why, why_len, "cannot load the kizuna OpenSSL provider: %s", err);
		return NULL;
	}
	SSL_CTX *ctx = SSL_CTX_new(m);
	if (!ctx)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE);
	if (!SSL_CTX_set1_groups_list(ctx, cfg->groups ? cfg->groups : NET_TLS_DEFAULT_GROUPS)) {
		snprintf(why, why_len, "unknown TLS group in '%s'", cfg->groups);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
		net_tls_errors(err, sizeof err);
		snprintf(why, why_len, "cannot load CA %s: %s", cfg->ca_file, err);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
		net_tls_errors(err, sizeof err);
		snprintf(why, why_len, "cannot load certificate %s: %s", cfg->cert_file, err);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		net_tls_errors(err, sizeof err);
		snprintf(why, why_len, "cannot load key %s: %s", cfg->key_file, err);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
fail:
	net_tls_errors(err, sizeof err);
	snprintf(why, why_len, "SSL_CTX_new: %s", err);
	return NULL;
}

const char *net_tls_check_client_cert(X509 *cert, const char *td, char **id)
{
	if (id)
		*id = NULL;
	if (X509_get_extension_flags(cert) & EXFLAG_CA)
		return "certificate is a CA certificate (basicConstraints cA=TRUE)";
	uint32_t xku = X509_get_extended_key_usage(cert);
	if (!(X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) || !(xku & XKU_SSL_CLIENT))
		return "certificate's extended key usage does not include clientAuth";
	/* RFC 5280 4.2.1.3: a leaf that signs in TLS needs digitalSignature; keyCertSign and
	 * cRLSign are a CA's */
	uint32_t ku = X509_get_key_usage(cert);
	if (!(X509_get_extension_flags(cert) & EXFLAG_KUSAGE))
		return "certificate has no key usage extension (digitalSignature is required)";
	if (!(ku & KU_DIGITAL_SIGNATURE))
		return "certificate's key usage lacks digitalSignature";
	if (ku & (KU_KEY_CERT_SIGN | KU_CRL_SIGN))
		return "certificate's key usage includes keyCertSign or cRLSign (a CA's, not a client's)";
	GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	const unsigned char *uri = NULL;
	int uris = 0, ulen = 0;
	for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
		if (gn->type != GEN_URI)
			continue;
		if (uris++ == 0) {
			uri = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
			ulen = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
		}
	}
	const char *why = NULL;
	if (uris != 1)
		why = uris == 0 ? "certificate has no URI SAN (SPIFFE ID)" : "certificate has more than one URI SAN";
	else if (ulen <= 0 || ulen > 2048 || memchr(uri, 0, (size_t)ulen))
		why = "certificate URI SAN is not a spiffe:// ID";
	else
		why = kz_spiffe_check((const char *)uri, (size_t)ulen, td);
	if (!why && id && !(*id = strndup((const char *)uri, (size_t)ulen)))
		why = "out of memory";
	GENERAL_NAMES_free(sans);
	return why;
}

static int reason_idx = -1; /* SSL ex_data: why the leaf was refused, for the log line */

static const struct net_tls_trust *trust_of(SSL *ssl)
{
	return ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
}

/* Runs the identity and revocation checks on the client's certificate inside the
 * handshake, so that a refused identity gets a TLS alert and never an MQTT session. The
 * chain and the validity window are OpenSSL's (ok == 0 with the error set). */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
	if (!ok || X509_STORE_CTX_get_error_depth(x) != 0)
		return ok;
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	const struct net_tls_trust *t = trust_of(ssl);
	X509 *cert = X509_STORE_CTX_get_current_cert(x);
	const char *why = net_tls_check_client_cert(cert, t ? t->trust_domain : NULL, NULL);
	/* bad_certificate (42) for every identity refusal: X509_V_ERR_CERT_REJECTED maps to it */
	int err = X509_V_ERR_CERT_REJECTED;
	const char *crl_bad = t ? atomic_load(&((struct net_tls_trust *)t)->crl_failing) : NULL;
	if (!why && crl_bad) { /* fail closed: a certificate cannot be checked against no list */
		why = crl_bad;
		err = X509_V_ERR_UNABLE_TO_GET_CRL;
	}
	if (!why && t && t->max_cert_lifetime_s) {
		int days = 0, secs = 0;
		if (!ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert), X509_get0_notAfter(cert)) ||
		    (int64_t)days * 86400 + secs > (int64_t)t->max_cert_lifetime_s + 3600) /* an hour: backdating */
			why = "certificate is valid longer than ca.max_cert_lifetime allows (short-lived credentials)";
	}
	const struct kz_revoked *rv = t ? atomic_load(&((struct net_tls_trust *)t)->revoked) : NULL;
	char serial[KZ_SERIAL_HEX];
	if (!why && rv && rv->n && kz_x509_serial_hex(cert, serial) == 0 && kz_revoked_has(rv, serial)) {
		why = "certificate is revoked";
		err = X509_V_ERR_CERT_REVOKED;
	}
	if (!why)
		return 1;
	if (ssl && reason_idx >= 0)
		SSL_set_ex_data(ssl, reason_idx, (void *)why);
	X509_STORE_CTX_set_error(x, err);
	return 0;
}

/* Whether an ALPN protocol list (RFC 7301 §3.1 wire form) names proto. */
static bool alpn_has(const unsigned char *in, size_t n, const char *proto)
{
	size_t pl = strlen(proto);
	for (size_t i = 0; i < n;) {
		size_t l = in[i++];
		if (l > n - i)
			return false;
		if (l == pl && memcmp(in + i, proto, pl) == 0)
			return true;
		i += l;
	}
	return false;
}

/* Before the server's first flight: a client asking for the enrolment protocol may come
 * without a certificate; every other one must present one (TLS 1.3 sends CertificateRequest
 * in that flight, so the choice is made here). */
static int client_hello_cb(SSL *ssl, int *alert, void *arg)
{
	(void)alert;
	const struct net_tls_trust *t = arg;
	const unsigned char *ext;
	size_t len;
	if (t && t->enroll &&
	    SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext, &len) &&
	    len >= 2 && (size_t)((ext[0] << 8) | ext[1]) == len - 2 && alpn_has(ext + 2, len - 2, KZ_ENROLL_ALPN))
		SSL_set_verify(ssl, SSL_VERIFY_PEER, verify_cb);
	return SSL_CLIENT_HELLO_SUCCESS;
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		   unsigned inlen, void *arg)
{
	(void)ssl;
	const struct net_tls_trust *t = arg;
	static const char *const protos[] = { KZ_ENROLL_ALPN, "mqtt" };
	for (size_t i = t && t->enroll ? 0 : 1; i < 2; i++) {
		if (alpn_has(in, inlen, protos[i])) {
			/* point into the client's list, which outlives the callback's use */
			size_t pl = strlen(protos[i]);
			for (unsigned j = 0; j < inlen;) {
				unsigned l = in[j++];
				if (l == pl && memcmp(in + j, protos[i], pl) == 0) {
					*out = in + j;
					*outlen = (unsigned char)l;
					return SSL_TLSEXT_ERR_OK;
				}
				j += l;
			}
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

bool net_tls_requires_pq(SSL *ssl)
{
	const struct net_tls_trust *t = trust_of(ssl);
	return t && t->require_pq;
}

bool net_tls_is_enroll(SSL *ssl)
{
	const unsigned char *p;
	unsigned n;
	SSL_get0_alpn_selected(ssl, &p, &n);
	return n == strlen(KZ_ENROLL_ALPN) && memcmp(p, KZ_ENROLL_ALPN, n) == 0;
}

const char *net_tls_refusal(SSL *ssl)
{
	return reason_idx >= 0 ? SSL_get_ex_data(ssl, reason_idx) : NULL;
}

/* The application traffic secrets of a server handshake, from OpenSSL's key-log callback
 * (the only way OpenSSL 3.0 gives them out), held until the record layer takes them. */
struct secrets {
	uint8_t c[48], s[48];
	size_t len;
	bool have_c, have_s;
};
static int secrets_idx = -1;

static void secrets_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	if (ptr) {
		OPENSSL_cleanse(ptr, sizeof(struct secrets));
		free(ptr);
	}
}

static int unhex_secret(const char *h, uint8_t *out, size_t *len)
{
	size_t n = strlen(h);
	if (n % 2 || n / 2 > 48)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		int a = kz_hexval(h[2 * i]), b = kz_hexval(h[2 * i + 1]);
		if (a < 0 || b < 0)
			return -1;
		out[i] = (uint8_t)(a * 16 + b);
	}
	*len = n / 2;
	return 0;
}

static void keylog_cb(const SSL *cssl, const char *line)
{
	SSL *ssl = (SSL *)cssl;
	bool cl = strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0, sv = strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0;
	if (!cl && !sv)
		return;
	const char *hex = strchr(line + 24, ' ');
	if (!hex)
		return;
	struct secrets *s = SSL_get_ex_data(ssl, secrets_idx);
	if (!s) {
		if (!(s = calloc(1, sizeof *s)))
			return;
		SSL_set_ex_data(ssl, secrets_idx, s);
	}
	size_t len = 0;
	if (unhex_secret(hex + 1, cl ? s->c : s->s, &len) == 0) {
		s->len = len;
		if (cl)
			s->have_c = true;
		else
			s->have_s = true;
	}
}

int net_tls_take_secrets(SSL *ssl, uint8_t client[48], uint8_t server[48], size_t *len)
{
	struct secrets *s = secrets_idx >= 0 ? SSL_get_ex_data(ssl, secrets_idx) : NULL;
	if (!s || !s->have_c || !s->have_s)
		return -1;
	memcpy(client, s->c, sizeof s->c);
	memcpy(server, s->s, sizeof s->s);
	*len = s->len;
	OPENSSL_cleanse(s, sizeof *s);
	return 0;
}

SSL_CTX *net_tls_server_ctx(const struct net_tls_config *cfg, char *why, size_t why_len)
{
	SSL_CTX *ctx = ctx_common(TLS_server_method(), cfg, why, why_len);
	if (!ctx)
		return NULL;
	if (reason_idx < 0)
		reason_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (secrets_idx < 0)
		secrets_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, secrets_free);
	/* the record layer takes over after the handshake (net_rl.c): it needs the secrets */
	SSL_CTX_set_keylog_callback(ctx, keylog_cb);
	SSL_CTX_set_app_data(ctx, cfg->trust);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
	SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, cfg->trust);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, cfg->trust);
	/* No resumption: every connection presents and verifies its certificate. */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
	if (names)
		SSL_CTX_set_client_CA_list(ctx, names);
	return ctx;
}

/* The server's preference: h2, then http/1.1 (RFC 7301 §3.2: the server chooses). */
static int alpn_http_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
			unsigned inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	static const struct { const char *p; unsigned char n; } pref[] = { { "h2", 2 }, { "http/1.1", 8 } };
	for (size_t k = 0; k < sizeof pref / sizeof pref[0]; k++) {
		for (unsigned j = 0; j < inlen;) {
			unsigned l = in[j++];
			if (l == pref[k].n && j + l <= inlen && memcmp(in + j, pref[k].p, l) == 0) {
				*out = in + j;
				*outlen = (unsigned char)l;
				return SSL_TLSEXT_ERR_OK;
			}
			j += l;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

SSL_CTX *net_tls_https_ctx(const struct net_tls_config *cfg, char *why, size_t why_len)
{
	SSL_CTX *ctx = ctx_common(TLS_server_method(), cfg, why, why_len);
	if (!ctx)
		return NULL;
	SSL_CTX_set_app_data(ctx, cfg->trust);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb); /* optional; checked like MQTT's when given */
	SSL_CTX_set_alpn_select_cb(ctx, alpn_http_cb, NULL);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return ctx;
}

SSL_CTX *net_tls_client_ctx(const struct net_tls_config *cfg, char *why, size_t why_len)
{
	SSL_CTX *ctx = ctx_common(TLS_client_method(), cfg, why, why_len);
	if (!ctx)
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* our own certificate must be one a server accepts from a client: say so before trying */
	X509 *own = SSL_CTX_get0_certificate(ctx);
	if (own && X509_check_purpose(own, X509_PURPOSE_SSL_CLIENT, 0) != 1) {
		snprintf(why, why_len, "%s is not a TLS client certificate (its key usage or extended key usage "
			 "does not allow clientAuth)", cfg->cert_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

void net_tls_ctx_free(SSL_CTX *ctx) { SSL_CTX_free(ctx); }

const char *net_tls_suite(SSL *ssl)
{
	const SSL_CIPHER *c = ssl ? SSL_get_current_cipher(ssl) : NULL;
	const char *n = c ? SSL_CIPHER_standard_name(c) : NULL;
	if (!n)
		return NULL;
	/* TLS 1.3 only: the suites are few and fixed, so a static string per suite */
	if (strcmp(n, "TLS_AES_128_GCM_SHA256") == 0)
		return "TLSv1.3 TLS_AES_128_GCM_SHA256";
	if (strcmp(n, "TLS_AES_256_GCM_SHA384") == 0)
		return "TLSv1.3 TLS_AES_256_GCM_SHA384";
	if (strcmp(n, "TLS_CHACHA20_POLY1305_SHA256") == 0)
		return "TLSv1.3 TLS_CHACHA20_POLY1305_SHA256";
	return "TLSv1.3";
}

char *net_tls_peer_spiffe(SSL *ssl, const char **why)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	if (!cert) {
		*why = "no client certificate";
		return NULL;
	}
	char *id = NULL;
	const struct net_tls_trust *t = trust_of(ssl);
	*why = net_tls_check_client_cert(cert, t ? t->trust_domain : NULL, &id);
	return id;
}

