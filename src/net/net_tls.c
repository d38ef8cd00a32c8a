/* net_tls.c — OpenSSL contexts for mutual TLS 1.3 and SPIFFE identity extraction. */
#include "net/net.h"
#include "base/kz_err.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_GROUPS "X25519:P-256"

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
	SSL_CTX *ctx = SSL_CTX_new(m);
	char err[256];
	if (!ctx)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE);
	if (!SSL_CTX_set1_groups_list(ctx, cfg->groups ? cfg->groups : DEFAULT_GROUPS)) {
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

/* spiffe://<td>/<org>/<kind>/<name>: SPIFFE ID path segments of letters, digits, '.', '-'
 * and '_' (SPIFFE-ID spec §2.2), exactly three of them here, the second one a known kind. */
static const char *check_spiffe(const char *id, size_t n, const char *td)
{
	size_t tl = td ? strlen(td) : 0;
	if (n < 9 || memcmp(id, "spiffe://", 9) != 0)
		return "certificate URI SAN is not a spiffe:// ID";
	const char *p = id + 9, *end = id + n;
	const char *slash = memchr(p, '/', (size_t)(end - p));
	if (!slash || slash == p)
		return "SPIFFE ID has no trust domain or no path";
	if (tl && ((size_t)(slash - p) != tl || memcmp(p, td, tl) != 0))
		return "SPIFFE ID is not in this node's trust domain";
	const char *seg[3];
	size_t len[3];
	int k = 0;
	for (p = slash + 1; p <= end && k < 4; k++) {
		const char *q = p;
		while (q < end && *q != '/')
			q++;
		if (q == p)
			return "SPIFFE ID has an empty path segment";
		for (const char *c = p; c < q; c++)
			if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
			      *c == '.' || *c == '-' || *c == '_'))
				return "SPIFFE ID path has a character outside [A-Za-z0-9._-]";
		if (k < 3) {
			seg[k] = p;
			len[k] = (size_t)(q - p);
		}
		p = q + 1;
	}
	if (k != 3)
		return "SPIFFE ID path is not /<org>/<kind>/<name>";
	static const char *const kinds[] = { "user", "sensor", "service", "node" };
	for (size_t i = 0; i < 4; i++)
		if (len[1] == strlen(kinds[i]) && memcmp(seg[1], kinds[i], len[1]) == 0)
			return NULL;
	return "SPIFFE ID kind is not user, sensor, service or node";
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
		why = check_spiffe((const char *)uri, (size_t)ulen, td);
	if (!why && id && !(*id = strndup((const char *)uri, (size_t)ulen)))
		why = "out of memory";
	GENERAL_NAMES_free(sans);
	return why;
}

static int reason_idx = -1; /* SSL ex_data: why the leaf was refused, for the log line */

/* Runs the identity checks on the client's certificate inside the handshake, so that a
 * refused identity gets a TLS alert (bad certificate) and never an MQTT session. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
	if (!ok || X509_STORE_CTX_get_error_depth(x) != 0)
		return ok;
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	const char *td = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
	const char *why = net_tls_check_client_cert(X509_STORE_CTX_get_current_cert(x), td, NULL);
	if (!why)
		return 1;
	if (ssl && reason_idx >= 0)
		SSL_set_ex_data(ssl, reason_idx, (void *)why);
	X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

const char *net_tls_refusal(SSL *ssl)
{
	return reason_idx >= 0 ? SSL_get_ex_data(ssl, reason_idx) : NULL;
}

SSL_CTX *net_tls_server_ctx(const struct net_tls_config *cfg, char *why, size_t why_len)
{
	SSL_CTX *ctx = ctx_common(TLS_server_method(), cfg, why, why_len);
	if (!ctx)
		return NULL;
	if (reason_idx < 0)
		reason_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	SSL_CTX_set_app_data(ctx, (void *)cfg->trust_domain);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
	/* No resumption: every connection presents and verifies its certificate. */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
	if (names)
		SSL_CTX_set_client_CA_list(ctx, names);
	return ctx;
}

SSL_CTX *net_tls_client_ctx(const struct net_tls_config *cfg, char *why, size_t why_len)
{
	SSL_CTX *ctx = ctx_common(TLS_client_method(), cfg, why, why_len);
	if (ctx)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

char *net_tls_peer_spiffe(SSL *ssl, const char **why)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	if (!cert) {
		*why = "no client certificate";
		return NULL;
	}
	char *id = NULL;
	*why = net_tls_check_client_cert(cert, SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)), &id);
	return id;
}
