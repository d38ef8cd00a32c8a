/* ca_p12.c — a certificate, its key and the CA in one PKCS#12 file (RFC 7292), for a person to
 * import into a browser (docs/CONSOLE.md "Your certificate in the browser"). OpenSSL 3's
 * defaults protect it: AES-256-CBC with PBKDF2 for the key and the certificates, a SHA-256 MAC;
 * Chromium and Firefox (NSS) read both. The friendly name is the certificate's SPIFFE ID. */
#include "trust/ca.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int fail(char *why, size_t n, const char *what, const char *path)
{
	unsigned long e = ERR_get_error();
	snprintf(why, n, "%s %s%s%s", what, path, e ? ": " : "", e ? ERR_reason_error_string(e) : "");
	ERR_clear_error();
	return -1;
}

int kz_ca_export_p12(const char *cert_path, const char *key_path, const char *ca_path, const char *password,
		     const char *out_path, char *why, size_t why_len)
{
	int rc = -1;
	X509 *cert = NULL, *ca = NULL;
	EVP_PKEY *key = NULL;
	STACK_OF(X509) *chain = NULL;
	PKCS12 *p12 = NULL;
	FILE *f = NULL;
	char name[512] = "";
	if (!(f = fopen(cert_path, "r")) || !(cert = PEM_read_X509(f, NULL, NULL, NULL))) {
		fail(why, why_len, "cannot read the certificate", cert_path);
		goto out;
	}
	fclose(f);
	if (!(f = fopen(key_path, "r")) || !(key = PEM_read_PrivateKey(f, NULL, NULL, NULL))) {
		fail(why, why_len, "cannot read the key", key_path);
		goto out;
	}
	fclose(f);
	f = NULL;
	if (X509_check_private_key(cert, key) != 1) {
		snprintf(why, why_len, "the key %s does not belong to the certificate %s", key_path, cert_path);
		ERR_clear_error();
		goto out;
	}
	if (ca_path) {
		if (!(f = fopen(ca_path, "r")) || !(ca = PEM_read_X509(f, NULL, NULL, NULL))) {
			fail(why, why_len, "cannot read the CA certificate", ca_path);
			goto out;
		}
		fclose(f);
		f = NULL;
		if (!(chain = sk_X509_new_null()) || !sk_X509_push(chain, ca)) {
			snprintf(why, why_len, "out of memory");
			goto out;
		}
		ca = NULL; /* the chain's */
	}
	GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && !name[0]; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		if (g->type == GEN_URI)
			snprintf(name, sizeof name, "%.*s", ASN1_STRING_length(g->d.uniformResourceIdentifier),
				 (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier));
	}
	GENERAL_NAMES_free(sans);
	if (!(p12 = PKCS12_create(password, name[0] ? name : NULL, key, cert, chain, 0, 0, 0, 0, 0))) {
		fail(why, why_len, "cannot make the PKCS#12 file for", cert_path);
		goto out;
	}
	mode_t old = umask(077); /* it holds a private key */
	f = fopen(out_path, "wb");
	umask(old);
	if (!f || i2d_PKCS12_fp(f, p12) != 1 || fclose(f) != 0) {
		f = NULL;
		fail(why, why_len, "cannot write", out_path);
		goto out;
	}
	f = NULL;
	rc = 0;
out:
	if (f)
		fclose(f);
	PKCS12_free(p12);
	sk_X509_pop_free(chain, X509_free);
	X509_free(ca);
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc;
}
