/* ca_revoke.c — revocation: the CRL the CA writes and the revocation set the node loads
 * from it. */
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

/* Writes crl.pem from es; the caller holds the lock. */
static int crl_write(struct kz_ca *ca, const struct entries *es, char *why, size_t why_len)
{
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *t = ASN1_TIME_new();
	BIO *mem = BIO_new(BIO_s_mem());
	int rc = KZ_ETLS;
	time_t now = time(NULL);
	if (!crl || !t || !mem || !X509_CRL_set_version(crl, 1) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)))
		goto out;
	if (!X509_time_adj_ex(t, 0, 0, &now) || !X509_CRL_set1_lastUpdate(crl, t) ||
	    !X509_time_adj_ex(t, CRL_DAYS, 0, &now) || !X509_CRL_set1_nextUpdate(crl, t))
		goto out;
	for (size_t i = 0; i < es->n; i++) {
		const struct kz_ca_entry *e = &es->v[i];
		if (e->status != 'R')
			continue;
		X509_REVOKED *r = X509_REVOKED_new();
		BIGNUM *bn = NULL;
		ASN1_INTEGER *sn = NULL;
		ASN1_TIME *rt = ASN1_TIME_new();
		ASN1_ENUMERATED *code = ASN1_ENUMERATED_new();
		time_t ra = (time_t)e->revoked_at;
		int code_v = kz_ca_reason_code(e->reason[0] ? e->reason : "unspecified");
		bool ok = r && rt && code && BN_hex2bn(&bn, e->serial) && (sn = BN_to_ASN1_INTEGER(bn, NULL)) &&
			  X509_REVOKED_set_serialNumber(r, sn) && X509_time_adj_ex(rt, 0, 0, &ra) &&
			  X509_REVOKED_set_revocationDate(r, rt) && ASN1_ENUMERATED_set(code, code_v) &&
			  X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, code, 0, 0) && X509_CRL_add0_revoked(crl, r);
		ASN1_ENUMERATED_free(code);
		ASN1_TIME_free(rt);
		ASN1_INTEGER_free(sn);
		BN_free(bn);
		if (!ok) {
			X509_REVOKED_free(r);
			goto out;
		}
	}
	ASN1_INTEGER *num = ASN1_INTEGER_new();
	/* the CRL number only grows (RFC 5280 5.2.3): milliseconds since 1970, so that a node can
	 * refuse an older list put back in place of a newer one */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t number = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	bool ok = num && ASN1_INTEGER_set_int64(num, number) && X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0);
	ASN1_INTEGER_free(num);
	if (!ok || !X509_CRL_sort(crl) || !X509_CRL_sign(crl, ca->key, EVP_sha256()) ||
	    !PEM_write_bio_X509_CRL(mem, crl))
		goto out;
	char *data;
	long len = BIO_get_mem_data(mem, &data);
	rc = kz_file_replace(ca->dir, "crl.pem", data, (size_t)len, 0644);
out:
	if (rc)
		snprintf(why, why_len, "cannot write %s/crl.pem", ca->dir);
	BIO_free(mem);
	ASN1_TIME_free(t);
	X509_CRL_free(crl);
	return rc;
}

int kz_ca_write_crl(struct kz_ca *ca, char *why, size_t why_len)
{
	int lk = kz_ca_lock(ca, why, why_len);
	if (lk < 0)
		return KZ_EIO;
	struct entries es;
	int rc = kz_ca_issued_load(ca, &es, why, why_len);
	if (!rc)
		rc = crl_write(ca, &es, why, why_len);
	free(es.v);
	close(lk);
	return rc;
}

int kz_ca_revoke(struct kz_ca *ca, const char *serial, const char *reason, char *why, size_t why_len)
{
	char want[KZ_SERIAL_HEX];
	size_t n = strlen(serial);
	if (n == 0 || n >= sizeof want) {
		snprintf(why, why_len, "'%s' is not a serial number", serial);
		return KZ_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!isxdigit((unsigned char)serial[i]) && serial[i] != ':') {
			snprintf(why, why_len, "'%s' is not a hexadecimal serial number", serial);
			return KZ_EINVAL;
		}
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (serial[i] != ':')
			want[k++] = (char)toupper((unsigned char)serial[i]);
	want[k] = 0;
	if (reason && kz_ca_reason_code(reason) < 0) {
		snprintf(why, why_len, "unknown reason '%s' (keyCompromise, affiliationChanged, superseded, "
				       "cessationOfOperation, privilegeWithdrawn, unspecified, …)", reason);
		return KZ_EINVAL;
	}
	int lk = kz_ca_lock(ca, why, why_len);
	if (lk < 0)
		return KZ_EIO;
	struct entries es;
	int rc = kz_ca_issued_load(ca, &es, why, why_len);
	if (rc) {
		close(lk);
		return rc;
	}
	rc = KZ_ENOTFOUND;
	for (size_t i = 0; i < es.n; i++) {
		struct kz_ca_entry *e = &es.v[i];
		/* compare without leading zeros: "0A1B" and "A1B" are the same number */
		const char *a = e->serial, *b = want;
		while (*a == '0' && a[1])
			a++;
		while (*b == '0' && b[1])
			b++;
		if (strcmp(a, b) != 0)
			continue;
		if (e->status == 'R') {
			snprintf(why, why_len, "serial %s (%s) was already revoked", e->serial, e->id);
			rc = KZ_EEXIST;
			break;
		}
		e->status = 'R';
		e->revoked_at = (int64_t)time(NULL);
		snprintf(e->reason, sizeof e->reason, "%s", reason ? reason : "unspecified");
		rc = kz_ca_issued_store(ca, &es);
		if (rc)
			snprintf(why, why_len, "cannot rewrite %s/issued: %s", ca->dir, strerror(errno));
		else
			rc = crl_write(ca, &es, why, why_len);
		if (!rc)
			snprintf(why, why_len, "%s", e->id);
		break;
	}
	if (rc == KZ_ENOTFOUND)
		snprintf(why, why_len, "this CA has not issued serial %s", want);
	free(es.v);
	close(lk);
	return rc;
}

/* ---------- revocation set ---------- */

static int serial_cmp(const void *a, const void *b) { return strcmp(a, b); }

struct kz_revoked *kz_revoked_load(const char *crl_file, const char *ca_file, char *why, size_t why_len)
{
	static _Atomic uint64_t gens;
	struct kz_revoked *r = calloc(1, sizeof *r);
	if (!r) {
		snprintf(why, why_len, "out of memory");
		return NULL;
	}
	r->gen = ++gens;
	FILE *f = fopen(crl_file, "re");
	if (!f) {
		if (errno == ENOENT) {
			r->missing = true;
			return r;
		}
		snprintf(why, why_len, "cannot open %s: %s", crl_file, strerror(errno));
		free(r);
		return NULL;
	}
	X509_CRL *crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	X509 *ca = NULL;
	f = fopen(ca_file, "re");
	if (f) {
		ca = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (!crl || !ca) {
		snprintf(why, why_len, !crl ? "%s is not a PEM CRL" : "cannot read the CA %s", !crl ? crl_file : ca_file);
		goto fail;
	}
	if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) != 0 ||
	    X509_CRL_verify(crl, X509_get0_pubkey(ca)) != 1) {
		snprintf(why, why_len, "%s is not signed by the CA in %s", crl_file, ca_file);
		goto fail;
	}
	STACK_OF(X509_REVOKED) *rs = X509_CRL_get_REVOKED(crl);
	int n = rs ? sk_X509_REVOKED_num(rs) : 0;
	r->serial = calloc((size_t)n + 1, sizeof *r->serial);
	if (!r->serial)
		goto fail;
	for (int i = 0; i < n; i++)
		if (kz_ca_serial_hex(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(rs, i)), r->serial[r->n]) == KZ_OK)
			r->n++;
	qsort(r->serial, r->n, sizeof *r->serial, serial_cmp);
	r->this_update = kz_ca_asn1_time_unix(X509_CRL_get0_lastUpdate(crl));
	r->next_update = kz_ca_asn1_time_unix(X509_CRL_get0_nextUpdate(crl));
	ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
	int64_t nv = 0;
	if (num && ASN1_INTEGER_get_int64(&nv, num) == 1 && nv > 0)
		r->number = (uint64_t)nv;
	ASN1_INTEGER_free(num);
	X509_CRL_free(crl);
	X509_free(ca);
	return r;
fail:
	X509_CRL_free(crl);
	X509_free(ca);
	kz_revoked_free(r);
	return NULL;
}

bool kz_revoked_has(const struct kz_revoked *r, const char *serial)
{
	return r && r->n && serial && bsearch(serial, r->serial, r->n, sizeof *r->serial, serial_cmp);
}

void kz_revoked_free(struct kz_revoked *r)
{
	if (!r)
		return;
	free(r->serial);
	free(r);
}


const char *kz_ca_entry_status(const struct kz_ca_entry *e, int64_t now)
{
	return e->status == 'R' ? "revoked" : e->not_after <= now ? "expired" : "valid";
}
