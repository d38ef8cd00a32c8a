/* net_pki.c — a development PKI: ECDSA P-256 CA, server and admin client certificates. */
#include "net/net.h"
#include "base/kz_err.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static EVP_PKEY *key_new(void) { return EVP_EC_gen("P-256"); }

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!ext)
		return KZ_ETLS;
	int ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? KZ_OK : KZ_ETLS;
}

struct cert_spec {
	const char *cn;
	int days;
	int is_ca;
	const char *san;   /* subjectAltName value or NULL */
	const char *eku;   /* extendedKeyUsage or NULL */
};

static X509 *cert_make(const struct cert_spec *sp, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key)
{
	X509 *c = X509_new();
	if (!c)
		return NULL;
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	ASN1_INTEGER *sn = NULL;
	if (RAND_bytes(serial, sizeof serial) != 1)
		goto fail;
	serial[0] &= 0x7F;
	bn = BN_bin2bn(serial, sizeof serial, NULL);
	sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
	if (!sn || !X509_set_serialNumber(c, sn))
		goto fail;
	X509_set_version(c, 2);
	X509_gmtime_adj(X509_getm_notBefore(c), -300);
	X509_gmtime_adj(X509_getm_notAfter(c), (long)sp->days * 86400L);
	X509_NAME *name = X509_get_subject_name(c);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"kizuna development", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)sp->cn, -1, -1, 0);
	X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
	if (!X509_set_pubkey(c, key))
		goto fail;
	X509 *iss = issuer ? issuer : c;
	if (sp->is_ca) {
		if (add_ext(c, iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
		    add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign"))
			goto fail;
	} else {
		if (add_ext(c, iss, NID_basic_constraints, "critical,CA:FALSE") ||
		    add_ext(c, iss, NID_key_usage, "critical,digitalSignature"))
			goto fail;
	}
	if (add_ext(c, iss, NID_subject_key_identifier, "hash") ||
	    add_ext(c, iss, NID_authority_key_identifier, "keyid:always"))
		goto fail;
	if (sp->san && add_ext(c, iss, NID_subject_alt_name, sp->san))
		goto fail;
	if (sp->eku && add_ext(c, iss, NID_ext_key_usage, sp->eku))
		goto fail;
	if (!X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()))
		goto fail;
	ASN1_INTEGER_free(sn);
	BN_free(bn);
	return c;
fail:
	ASN1_INTEGER_free(sn);
	BN_free(bn);
	X509_free(c);
	return NULL;
}

static int write_pem(const char *path, X509 *cert, EVP_PKEY *key)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, key ? 0600 : 0644);
	if (fd < 0)
		return KZ_EIO;
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return KZ_EIO;
	}
	int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
		     : PEM_write_X509(f, cert);
	if (fclose(f) != 0)
		ok = 0;
	return ok ? KZ_OK : KZ_EIO;
}

static int pair_write(const char *dir, const char *base, X509 *c, EVP_PKEY *k)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s.pem", dir, base);
	if (write_pem(path, c, NULL))
		return KZ_EIO;
	snprintf(path, sizeof path, "%s/%s.key", dir, base);
	return write_pem(path, NULL, k);
}

static int load_ca(const char *pki, X509 **ca, EVP_PKEY **ca_key)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/ca.pem", pki);
	FILE *f = fopen(path, "r");
	if (!f)
		return KZ_ENOTFOUND;
	*ca = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	snprintf(path, sizeof path, "%s/ca.key", pki);
	f = fopen(path, "r");
	if (!f)
		return KZ_ENOTFOUND;
	*ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return *ca && *ca_key ? KZ_OK : KZ_ETLS;
}

int net_pki_issue_client(const char *pki, const char *spiffe_id, const char *out_cert,
			 const char *out_key, int days, char *why, size_t why_len)
{
	X509 *ca = NULL, *c = NULL;
	EVP_PKEY *ca_key = NULL, *k = NULL;
	int rc = load_ca(pki, &ca, &ca_key);
	if (rc) {
		snprintf(why, why_len, "cannot load the CA from %s", pki);
		goto out;
	}
	char san[2100];
	snprintf(san, sizeof san, "URI:%s", spiffe_id);
	const char *cn = strrchr(spiffe_id, '/');
	struct cert_spec sp = { cn ? cn + 1 : spiffe_id, days, 0, san, "clientAuth" };
	k = key_new();
	c = k ? cert_make(&sp, k, ca, ca_key) : NULL;
	if (!c) {
		snprintf(why, why_len, "cannot issue a certificate for %s", spiffe_id);
		rc = KZ_ETLS;
		goto out;
	}
	if (write_pem(out_cert, c, NULL) || write_pem(out_key, NULL, k)) {
		snprintf(why, why_len, "cannot write %s or %s: %s", out_cert, out_key, strerror(errno));
		rc = KZ_EIO;
	}
out:
	X509_free(ca);
	X509_free(c);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(k);
	return rc;
}

int net_pki_ensure(const char *dir, const struct net_pki_names *names, char *why, size_t why_len)
{
	char pki[4096], path[4200];
	snprintf(pki, sizeof pki, "%s/pki", dir);
	snprintf(path, sizeof path, "%s/ca.pem", pki);
	if (access(path, F_OK) == 0)
		return 0;
	if (mkdir(dir, 0755) && errno != EEXIST) {
		snprintf(why, why_len, "cannot create %s: %s", dir, strerror(errno));
		return KZ_EIO;
	}
	if (mkdir(pki, 0700) && errno != EEXIST) {
		snprintf(why, why_len, "cannot create %s: %s", pki, strerror(errno));
		return KZ_EIO;
	}
	int rc = KZ_ETLS;
	EVP_PKEY *ca_key = key_new(), *srv_key = key_new();
	X509 *ca = NULL, *srv = NULL;
	struct cert_spec ca_sp = { "kizuna development CA", 3650, 1, NULL, NULL };
	struct cert_spec srv_sp = { "localhost", 825, 0,
				    "DNS:localhost,IP:127.0.0.1,IP:::1", "serverAuth" };
	if (!ca_key || !srv_key)
		goto out;
	ca = cert_make(&ca_sp, ca_key, NULL, NULL);
	srv = ca ? cert_make(&srv_sp, srv_key, ca, ca_key) : NULL;
	if (!srv)
		goto out;
	if (pair_write(pki, "ca", ca, ca_key) || pair_write(pki, "server", srv, srv_key)) {
		rc = KZ_EIO;
		goto out;
	}
	char admin_id[1024], cert[4200], key[4200];
	snprintf(admin_id, sizeof admin_id, "spiffe://%s/%s/user/admin", names->trust_domain, names->org);
	snprintf(cert, sizeof cert, "%s/admin.pem", pki);
	snprintf(key, sizeof key, "%s/admin.key", pki);
	rc = net_pki_issue_client(pki, admin_id, cert, key, 365, why, why_len);
	if (rc == KZ_OK)
		rc = 1;
out:
	if (rc < 0 && why[0] == 0)
		snprintf(why, why_len, "cannot create the development PKI in %s", pki);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(srv_key);
	X509_free(ca);
	X509_free(srv);
	return rc;
}
