/* test_ca.c — the certificate authority: create, issue, renew, revoke (and the CRL the node
 * loads from it), the issued list's strict parser, enrolment tokens (single use, expiry),
 * the enrolment request parser and the whole server side of an enrolment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/kz_err.h"
#include "trust/ca.h"

static char dir[256], pki[300];
static char why[1024];

static int setup(void **st)
{
	(void)st;
	snprintf(dir, sizeof dir, "/tmp/kz-ca-test-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(pki, sizeof pki, "%s/pki", dir);
	assert_int_equal(kz_ca_create(pki, "kizuna.test", "mod", 0, why, sizeof why), 1);
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static X509 *read_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(c);
	return c;
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

static void test_create_layout(void **st)
{
	(void)st;
	static const char *const files[] = { "ca.pem", "ca.key", "server.pem", "server.key", "admin.pem",
					     "admin.key", "issued", "crl.pem" };
	char p[400];
	for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
		snprintf(p, sizeof p, "%s/%s", pki, files[i]);
		assert_int_equal(access(p, R_OK), 0);
	}
	struct stat sb;
	snprintf(p, sizeof p, "%s/ca.key", pki);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* a second create touches nothing */
	assert_int_equal(kz_ca_create(pki, "kizuna.test", "mod", 0, why, sizeof why), 0);
	/* the admin certificate passes the node's identity rules */
	snprintf(p, sizeof p, "%s/admin.pem", pki);
	X509 *a = read_cert(p);
	char serial[KZ_SERIAL_HEX];
	assert_int_equal(kz_x509_serial_hex(a, serial), 0);
	assert_int_equal(strlen(serial), 32);
	X509_free(a);
	/* a bad trust domain is refused before anything is written */
	snprintf(p, sizeof p, "%s/other", dir);
	assert_true(kz_ca_create(p, "Bad Domain", "mod", 0, why, sizeof why) < 0);
	assert_int_not_equal(access(p, F_OK), 0);
}

static void test_issue_list_revoke(void **st)
{
	(void)st;
	struct kz_ca *ca;
	assert_int_equal(kz_ca_open(pki, NULL, &ca, why, sizeof why), 0);
	char cert[400], key[400], serial[KZ_SERIAL_HEX];
	snprintf(cert, sizeof cert, "%s/bob.pem", dir);
	snprintf(key, sizeof key, "%s/bob.key", dir);
	/* the trust domain comes from the admin certificate: a foreign one is refused */
	assert_int_not_equal(kz_ca_issue(ca, "spiffe://elsewhere/mod/user/bob", 3600, NULL, cert, key, serial, why, sizeof why), 0);
	assert_non_null(strstr(why, "trust domain"));
	assert_int_not_equal(kz_ca_issue(ca, "spiffe://kizuna.test/mod/robot/bob", 3600, NULL, cert, key, serial, why, sizeof why), 0);
	assert_int_not_equal(kz_ca_issue(ca, "spiffe://kizuna.test/mod/user/bob", 0, NULL, cert, key, serial, why, sizeof why), 0);
	assert_int_equal(kz_ca_issue(ca, "spiffe://kizuna.test/mod/user/bob", 3600, NULL, cert, key, serial, why, sizeof why), 0);
	X509 *c = read_cert(cert);
	char s2[KZ_SERIAL_HEX];
	kz_x509_serial_hex(c, s2);
	assert_string_equal(serial, s2);
	const ASN1_TIME *na = X509_get0_notAfter(c);
	int day, sec;
	assert_int_equal(ASN1_TIME_diff(&day, &sec, NULL, na), 1);
	assert_true(day == 0 && sec > 3500 && sec <= 3600);
	assert_true(X509_get_extended_key_usage(c) & XKU_SSL_CLIENT);
	assert_false(X509_get_extension_flags(c) & EXFLAG_CA);
	X509_free(c);

	/* renew: new serial, same key and identity */
	char renewed[400], s3[KZ_SERIAL_HEX];
	snprintf(renewed, sizeof renewed, "%s/bob2.pem", dir);
	assert_int_equal(kz_ca_renew(ca, cert, 7200, renewed, s3, why, sizeof why), 0);
	assert_string_not_equal(s3, serial);
	X509 *r1 = read_cert(cert), *r2 = read_cert(renewed);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(r1), X509_get0_pubkey(r2)), 1);
	X509_free(r1);
	X509_free(r2);

	/* revoke: unknown, bad, good, twice; then the CRL names exactly the revoked one */
	assert_int_equal(kz_ca_revoke(ca, "ABCDEF", NULL, why, sizeof why), KZ_ENOTFOUND);
	assert_int_equal(kz_ca_revoke(ca, "xyz", NULL, why, sizeof why), KZ_EINVAL);
	assert_int_equal(kz_ca_revoke(ca, serial, "noSuchReason", why, sizeof why), KZ_EINVAL);
	char lower[KZ_SERIAL_HEX];
	for (size_t i = 0; i <= strlen(serial); i++)
		lower[i] = (char)(serial[i] >= 'A' && serial[i] <= 'F' ? serial[i] + 32 : serial[i]);
	assert_int_equal(kz_ca_revoke(ca, lower, "keyCompromise", why, sizeof why), 0);
	assert_string_equal(why, "spiffe://kizuna.test/mod/user/bob");
	assert_int_equal(kz_ca_revoke(ca, serial, NULL, why, sizeof why), KZ_EEXIST);
	/* a revoked certificate cannot be renewed */
	assert_int_equal(kz_ca_renew(ca, cert, 7200, renewed, s3, why, sizeof why), KZ_EDENIED);

	char crl[400], cafile[400];
	snprintf(crl, sizeof crl, "%s/crl.pem", pki);
	snprintf(cafile, sizeof cafile, "%s/ca.pem", pki);
	struct kz_revoked *rv = kz_revoked_load(crl, cafile, why, sizeof why);
	assert_non_null(rv);
	assert_int_equal(rv->n, 1);
	assert_true(kz_revoked_has(rv, serial));
	assert_false(kz_revoked_has(rv, s3));
	assert_true(rv->next_update > rv->this_update);
	kz_revoked_free(rv);

	/* the issued list: bob valid → revoked, bob2 valid, admin valid */
	const char *text = read_text(crl);
	assert_non_null(strstr(text, "BEGIN X509 CRL"));
	char issued[400];
	snprintf(issued, sizeof issued, "%s/issued", pki);
	text = read_text(issued);
	unsigned lines = 0, revoked = 0;
	for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
		struct kz_ca_entry e;
		const char *w;
		assert_int_equal(kz_ca_parse_entry(p, (size_t)(strchr(p, '\n') - p), &e, &w), 0);
		lines++;
		revoked += e.status == 'R';
		if (e.status == 'R')
			assert_string_equal(e.reason, "keyCompromise");
	}
	assert_int_equal(lines, 3);
	assert_int_equal(revoked, 1);
	kz_ca_close(ca);
}

static void test_crl_from_another_ca(void **st)
{
	(void)st;
	char other[400], crl[500], cafile[400];
	snprintf(other, sizeof other, "%s/other", dir);
	assert_int_equal(kz_ca_create(other, "kizuna.test", "mod", 0, why, sizeof why), 1);
	snprintf(crl, sizeof crl, "%s/crl.pem", other);
	snprintf(cafile, sizeof cafile, "%s/ca.pem", pki);
	assert_null(kz_revoked_load(crl, cafile, why, sizeof why));
	assert_non_null(strstr(why, "not signed by the CA"));
	/* a missing CRL: nothing revoked */
	snprintf(crl, sizeof crl, "%s/none.pem", dir);
	struct kz_revoked *rv = kz_revoked_load(crl, cafile, why, sizeof why);
	assert_non_null(rv);
	assert_int_equal(rv->n, 0);
	kz_revoked_free(rv);
	/* garbage */
	snprintf(crl, sizeof crl, "%s/garbage.pem", dir);
	FILE *f = fopen(crl, "w");
	fputs("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", f);
	fclose(f);
	assert_null(kz_revoked_load(crl, cafile, why, sizeof why));
}

static void test_parse_entry(void **st)
{
	(void)st;
	static const char *const bad[] = {
		"",
		"V\tAB\t1\t2\t-\t-",                                 /* 6 fields */
		"X\tAB\t1\t2\t-\t-\tspiffe://t/o/user/n",             /* status */
		"V\tab\t1\t2\t-\t-\tspiffe://t/o/user/n",             /* lower-case serial */
		"V\tAB\tx\t2\t-\t-\tspiffe://t/o/user/n",             /* time */
		"V\tAB\t1\t2\t5\tkeyCompromise\tspiffe://t/o/user/n", /* V with a revocation time */
		"R\tAB\t1\t2\t-\tkeyCompromise\tspiffe://t/o/user/n", /* R without */
		"R\tAB\t1\t2\t5\tbogus\tspiffe://t/o/user/n",         /* reason */
		"V\tAB\t1\t2\t-\t-\thttps://t/o/user/n",              /* id */
		"V\tAB\t1\t2\t-\t-\tspiffe://t/o/user/n\textra",      /* 8 fields */
	};
	struct kz_ca_entry e;
	const char *w;
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(kz_ca_parse_entry(bad[i], strlen(bad[i]), &e, &w), -1);
	const char *good = "R\t0A1B\t1\t2\t3\tsuperseded\tspiffe://t/o/node/n1";
	assert_int_equal(kz_ca_parse_entry(good, strlen(good), &e, &w), 0);
	assert_int_equal(e.status, 'R');
	assert_string_equal(e.serial, "0A1B");
	assert_int_equal(e.revoked_at, 3);
	assert_string_equal(e.id, "spiffe://t/o/node/n1");
}

/* A CSR for a new key of the given type ("P-256" or NULL for RSA). */
static char *make_csr(const char *curve, EVP_PKEY **key_out, bool break_sig)
{
	EVP_PKEY *k = curve ? EVP_EC_gen(curve) : EVP_RSA_gen(2048);
	X509_REQ *req = X509_REQ_new();
	X509_REQ_set_version(req, 0);
	X509_REQ_set_pubkey(req, k);
	X509_REQ_sign(req, k, EVP_sha256());
	if (break_sig) {
		/* a CSR whose public key is not the key that signed it: no proof of possession */
		EVP_PKEY *k2 = EVP_EC_gen("P-256");
		X509_REQ_set_pubkey(req, k2);
		EVP_PKEY_free(k2);
	}
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509_REQ(b, req);
	char *data;
	long n = BIO_get_mem_data(b, &data);
	char *s = strndup(data, (size_t)n);
	BIO_free(b);
	X509_REQ_free(req);
	if (key_out)
		*key_out = k;
	else
		EVP_PKEY_free(k);
	return s;
}

static char *serve(struct kz_ca *ca, const char *tok, const char *csr, uint32_t max, bool *ok, char id[2100])
{
	char reason[512];
	return kz_enroll_serve(ca, tok, strlen(tok), csr, strlen(csr), max, ok, id, reason, sizeof reason);
}

static void test_tokens_and_enrolment(void **st)
{
	(void)st;
	struct kz_ca *ca;
	assert_int_equal(kz_ca_open(pki, "kizuna.test", &ca, why, sizeof why), 0);
	char tok[KZ_TOKEN_LEN], tok2[KZ_TOKEN_LEN], id[2100];
	assert_int_not_equal(kz_ca_token(ca, "spiffe://other.domain/mod/sensor/s1", 60, 3600, tok, why, sizeof why), 0);
	assert_int_equal(kz_ca_token(ca, "spiffe://kizuna.test/mod/sensor/s1", 60, 7200, tok, why, sizeof why), 0);
	assert_int_equal(strlen(tok), KZ_TOKEN_LEN - 1);
	assert_memory_equal(tok, "kzt1_", 5);
	assert_int_equal(kz_ca_token(ca, "spiffe://kizuna.test/mod/sensor/s2", 60, 3600, tok2, why, sizeof why), 0);
	assert_string_not_equal(tok, tok2);
	/* only hashes are stored */
	char tf[400];
	snprintf(tf, sizeof tf, "%s/tokens", pki);
	assert_null(strstr(read_text(tf), tok + 5));

	bool ok;
	EVP_PKEY *k;
	char *csr = make_csr("P-256", &k, false);
	/* bad CSRs are refused before the token is spent */
	char *rsa = make_csr(NULL, NULL, false), *forged = make_csr("P-256", NULL, true);
	char *a = serve(ca, tok, rsa, 0, &ok, id);
	assert_false(ok);
	assert_non_null(strstr(a, "ERROR csr-invalid"));
	free(a);
	a = serve(ca, tok, forged, 0, &ok, id);
	assert_false(ok);
	assert_non_null(strstr(a, "proof of possession"));
	free(a);
	a = serve(ca, "kzt1_nonsense", csr, 0, &ok, id);
	assert_false(ok);
	assert_non_null(strstr(a, "ERROR token-unknown"));
	free(a);

	/* the good one: a certificate for our key with the token's identity, lifetime capped */
	a = serve(ca, tok, csr, 3600, &ok, id);
	assert_true(ok);
	assert_string_equal(id, "spiffe://kizuna.test/mod/sensor/s1");
	assert_memory_equal(a, "OK\n", 3);
	BIO *b = BIO_new_mem_buf(a + 3, -1);
	X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL), *cac = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	assert_non_null(leaf);
	assert_non_null(cac);
	assert_int_equal(X509_check_private_key(leaf, k), 1);
	assert_int_equal(X509_verify(leaf, X509_get0_pubkey(cac)), 1);
	int day, sec;
	ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notAfter(leaf));
	assert_true(day == 0 && sec > 3500 && sec <= 3600);
	X509_free(leaf);
	X509_free(cac);
	free(a);

	/* single use */
	a = serve(ca, tok, csr, 0, &ok, id);
	assert_false(ok);
	assert_non_null(strstr(a, "ERROR token-used"));
	free(a);

	/* expiry: a token with a 1 s time to live, tried 2 s later */
	char tok3[KZ_TOKEN_LEN];
	assert_int_equal(kz_ca_token(ca, "spiffe://kizuna.test/mod/sensor/s3", 1, 3600, tok3, why, sizeof why), 0);
	sleep(2);
	a = serve(ca, tok3, csr, 0, &ok, id);
	assert_false(ok);
	assert_non_null(strstr(a, "ERROR token-unknown"));
	free(a);
	/* the other token still works */
	a = serve(ca, tok2, csr, 0, &ok, id);
	assert_true(ok);
	free(a);
	free(csr);
	free(rsa);
	free(forged);
	EVP_PKEY_free(k);
	kz_ca_close(ca);
}

static void test_enroll_parse(void **st)
{
	(void)st;
	const char *tok, *csr, *w;
	size_t tl, cl;
	static const char full[] = "ENROLL kzt1_abc\n-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
				   "-----END CERTIFICATE REQUEST-----\n";
	/* every prefix needs more, the whole parses */
	for (size_t n = 0; n < sizeof full - 2; n++)
		assert_int_equal(kz_enroll_parse(full, n, &tok, &tl, &csr, &cl, &w), 1);
	assert_int_equal(kz_enroll_parse(full, sizeof full - 1, &tok, &tl, &csr, &cl, &w), 0);
	assert_int_equal(tl, 8);
	assert_memory_equal(tok, "kzt1_abc", 8);
	assert_int_equal(cl, sizeof full - 2 - 16);
	static const char *const bad[] = {
		"GET / HTTP/1.1\r\n",
		"ENROLL \n-----BEGIN CERTIFICATE REQUEST-----\n",
		"ENROLL a b\n-----BEGIN CERTIFICATE REQUEST-----\n",
		"ENROLL abc\nhello",
		"ENROLL abc\n-----BEGIN CERTIFICATE REQUEST-----\n\x01",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(kz_enroll_parse(bad[i], strlen(bad[i]), &tok, &tl, &csr, &cl, &w), -1);
	char longtok[300] = "ENROLL ";
	memset(longtok + 7, 'a', 200);
	assert_int_equal(kz_enroll_parse(longtok, strlen(longtok), &tok, &tl, &csr, &cl, &w), -1);
}

static void test_duration_and_spiffe(void **st)
{
	(void)st;
	uint64_t v;
	assert_int_equal(kz_parse_duration("90", &v), 0);
	assert_int_equal(v, 90);
	assert_int_equal(kz_parse_duration("15m", &v), 0);
	assert_int_equal(v, 900);
	assert_int_equal(kz_parse_duration("24h", &v), 0);
	assert_int_equal(v, 86400);
	assert_int_equal(kz_parse_duration("7d", &v), 0);
	assert_int_equal(v, 604800);
	assert_int_equal(kz_parse_duration("h", &v), -1);
	assert_int_equal(kz_parse_duration("5x", &v), -1);
	assert_int_equal(kz_parse_duration("5hh", &v), -1);
	assert_int_equal(kz_parse_duration("99999999999999999999", &v), -1);
	static const char *const ok[] = { "spiffe://t.d/org/user/a", "spiffe://t/o/node/n-1.x_y" };
	static const char *const no[] = { "spiffe://t/o/user", "spiffe://t/o/user/a/b", "spiffe:///o/user/a",
					  "spiffe://T/o/user/a", "spiffe://t/o/admin/a", "spiffe://t/o//a",
					  "spiffe://t/o/user/a b", "http://t/o/user/a" };
	for (size_t i = 0; i < 2; i++)
		assert_null(kz_spiffe_check(ok[i], strlen(ok[i]), NULL));
	for (size_t i = 0; i < sizeof no / sizeof *no; i++)
		assert_non_null(kz_spiffe_check(no[i], strlen(no[i]), NULL));
	assert_non_null(kz_spiffe_check(ok[0], strlen(ok[0]), "t"));
	assert_null(kz_spiffe_check(ok[0], strlen(ok[0]), "t.d"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_layout),
		cmocka_unit_test(test_issue_list_revoke),
		cmocka_unit_test(test_crl_from_another_ca),
		cmocka_unit_test(test_parse_entry),
		cmocka_unit_test(test_tokens_and_enrolment),
		cmocka_unit_test(test_enroll_parse),
		cmocka_unit_test(test_duration_and_spiffe),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
