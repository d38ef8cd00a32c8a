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

SSL_CTX *net_tls_server_ctx(const struct net_tls_config *cfg, char *why, size_t why_len)
{
	SSL_CTX *ctx = ctx_common(TLS_server_method(), cfg, why, why_len);
	if (!ctx)
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
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
	GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	char *id = NULL;
	int uris = 0;
	for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
		if (gn->type != GEN_URI)
			continue;
		uris++;
		const unsigned char *p = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
		int len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
		if (uris == 1 && len > 9 && len < 2048 && memcmp(p, "spiffe://", 9) == 0 &&
		    !memchr(p, 0, (size_t)len))
			id = strndup((const char *)p, (size_t)len);
	}
	GENERAL_NAMES_free(sans);
	if (uris != 1) {
		free(id);
		*why = uris == 0 ? "certificate has no URI SAN (SPIFFE ID)" :
				   "certificate has more than one URI SAN";
		return NULL;
	}
	if (!id)
		*why = "certificate URI SAN is not a spiffe:// ID";
	return id;
}
