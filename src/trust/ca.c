/* ca.c — the certificate authority: identities, its files, certificates, the issued list,
 * create, issue, renew and list (see ca.h for the files). Revocation and the CRL are in
 * ca_revoke.c, enrolment in ca_enroll.c. */
#include "trust/ca_internal.h"
#include "base/kz_array.h"
#include "base/kz_base64.h"
#include "base/kz_err.h"
#include "base/kz_file.h"
#include "base/kz_hex.h"
#include "crypto/kz_crypto.h"
#include "crypto/kz_provider.h"

#include <ctype.h>
#include <arpa/inet.h>
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


/* ---------- identities ---------- */

const char *kz_spiffe_check(const char *id, size_t n, const char *td)
{
	size_t tl = td ? strlen(td) : 0;
	if (n < 9 || memcmp(id, "spiffe://", 9) != 0)
		return "certificate URI SAN is not a spiffe:// ID";
	const char *p = id + 9, *end = id + n;
	const char *slash = memchr(p, '/', (size_t)(end - p));
	if (!slash || slash == p)
		return "SPIFFE ID has no trust domain or no path";
	for (const char *c = p; c < slash; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' || *c == '_'))
			return "SPIFFE ID trust domain has a character outside [a-z0-9._-]";
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
		if ((q - p == 1 && p[0] == '.') || (q - p == 2 && p[0] == '.' && p[1] == '.'))
			return "SPIFFE ID has a '.' or '..' path segment (SPIFFE ID spec 2.2)";
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

/* An ASN.1 INTEGER serial as upper-case hex (BN_bn2hex's form); -1 when over 20 octets. */
int kz_ca_serial_hex(const ASN1_INTEGER *sn, char out[KZ_SERIAL_HEX])
{
	out[0] = 0;
	BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
	char *h = bn ? BN_bn2hex(bn) : NULL;
	int rc = KZ_EINVAL;
	if (h && strlen(h) < KZ_SERIAL_HEX) {
		snprintf(out, KZ_SERIAL_HEX, "%s", h);
		rc = KZ_OK;
	}
	OPENSSL_free(h);
	BN_free(bn);
	return rc;
}

int kz_x509_serial_hex(const struct x509_st *cert, char out[KZ_SERIAL_HEX])
{
	return kz_ca_serial_hex(X509_get0_serialNumber(cert), out);
}

int kz_cert_file_serial(const char *path, char out[KZ_SERIAL_HEX], char *why, size_t why_len)
{
	FILE *f = fopen(path, "re");
	X509 *c = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	int rc = c ? kz_x509_serial_hex(c, out) : KZ_EINVAL;
	if (rc)
		snprintf(why, why_len, "cannot read a certificate from %s", path);
	X509_free(c);
	return rc;
}

/* The single URI SAN of a certificate (malloc'd) or NULL. */
char *kz_ca_cert_uri(X509 *c)
{
	GENERAL_NAMES *sans = X509_get_ext_d2i(c, NID_subject_alt_name, NULL, NULL);
	char *id = NULL;
	int uris = 0;
	for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
		if (gn->type != GEN_URI)
			continue;
		if (uris++ == 0)
			id = strndup((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier),
				     (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier));
	}
	GENERAL_NAMES_free(sans);
	if (uris != 1) {
		free(id);
		return NULL;
	}
	return id;
}

int kz_parse_duration(const char *s, uint64_t *out)
{
	if (!s || !isdigit((unsigned char)*s))
		return -1;
	uint64_t x = 0;
	for (; isdigit((unsigned char)*s); s++) {
		if (x > (UINT64_MAX - 9) / 10)
			return -1;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	uint64_t m = 1;
	if (*s) {
		switch (*s) {
		case 's': m = 1; break;
		case 'm': m = 60; break;
		case 'h': m = 3600; break;
		case 'd': m = 86400; break;
		default: return -1;
		}
		if (s[1])
			return -1;
	}
	if (x > UINT64_MAX / m)
		return -1;
	*out = x * m;
	return 0;
}

/* ---------- files ---------- */

int kz_ca_path_of(char *out, size_t n, const char *dir, const char *name)
{
	int k = snprintf(out, n, "%s/%s", dir, name);
	return k < 0 || (size_t)k >= n ? KZ_EINVAL : KZ_OK;
}

/* Reads dir/name whole (NUL-terminated); a missing file reads as empty. */
int kz_ca_file_read(const char *dir, const char *name, char **out, size_t *len)
{
	char path[1200];
	*out = NULL;
	*len = 0;
	if (kz_ca_path_of(path, sizeof path, dir, name))
		return KZ_EINVAL;
	FILE *f = fopen(path, "re");
	if (!f) {
		if (errno != ENOENT)
			return KZ_EIO;
		*out = calloc(1, 1);
		return *out ? KZ_OK : KZ_ENOMEM;
	}
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	for (;;) {
		if (!b) {
			fclose(f);
			return KZ_ENOMEM;
		}
		n += fread(b + n, 1, cap - n - 1, f);
		if (n < cap - 1)
			break;
		if (cap >= ISSUED_MAX) {
			free(b);
			fclose(f);
			return KZ_ETOOBIG;
		}
		char *nb = realloc(b, cap *= 2);
		if (!nb)
			free(b);
		b = nb;
	}
	int err = ferror(f);
	fclose(f);
	if (err) {
		free(b);
		return KZ_EIO;
	}
	b[n] = 0;
	*out = b;
	*len = n;
	return KZ_OK;
}

/* flock on DIR/ca.lock; returns the fd (close to unlock), or -1 with *why. */
int kz_ca_lock(const struct kz_ca *ca, char *why, size_t why_len)
{
	char path[1200];
	int fd = kz_ca_path_of(path, sizeof path, ca->dir, "ca.lock") ? -1 : open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	while (fd >= 0 && flock(fd, LOCK_EX)) {
		if (errno != EINTR) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0)
		snprintf(why, why_len, "cannot lock %s/ca.lock: %s", ca->dir, strerror(errno));
	return fd;
}

int kz_ca_write_pem_file(const char *path, X509 *cert, EVP_PKEY *key)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, key ? 0600 : 0644);
	if (fd < 0)
		return KZ_EIO;
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return KZ_EIO;
	}
	int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		ok = 0;
	if (fclose(f) != 0)
		ok = 0;
	return ok ? KZ_OK : KZ_EIO;
}

/* ---------- certificates ---------- */

struct cert_spec {
	const char *cn;
	int64_t lifetime_s;
	bool is_ca;
	const char *san; /* subjectAltName config value or NULL */
	const char *eku; /* extendedKeyUsage or NULL */
};

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

/* A certificate for pub, signed by issuer (self-signed when issuer is NULL). */
static X509 *cert_make(const struct cert_spec *sp, EVP_PKEY *pub, X509 *issuer, EVP_PKEY *issuer_key)
{
	X509 *c = X509_new();
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	ASN1_INTEGER *sn = NULL;
	if (!c || RAND_bytes(serial, sizeof serial) != 1)
		goto fail;
	serial[0] &= 0x7F; /* positive (RFC 5280 §4.1.2.2) */
	serial[0] |= 0x01; /* and 16 octets, so that every serial prints with 32 hex digits */
	bn = BN_bin2bn(serial, sizeof serial, NULL);
	sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
	if (!sn || !X509_set_serialNumber(c, sn))
		goto fail;
	X509_set_version(c, 2);
	X509_gmtime_adj(X509_getm_notBefore(c), -300);
	X509_gmtime_adj(X509_getm_notAfter(c), (long)sp->lifetime_s);
	X509_NAME *name = X509_get_subject_name(c);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"kizuna", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)sp->cn, -1, -1, 0);
	X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
	if (!X509_set_pubkey(c, pub))
		goto fail;
	X509 *iss = issuer ? issuer : c;
	if (sp->is_ca) {
		if (add_ext(c, iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
		    add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign"))
			goto fail;
	} else if (add_ext(c, iss, NID_basic_constraints, "critical,CA:FALSE") ||
		   add_ext(c, iss, NID_key_usage, "critical,digitalSignature")) {
		goto fail;
	}
	if (add_ext(c, iss, NID_subject_key_identifier, "hash") ||
	    add_ext(c, iss, NID_authority_key_identifier, "keyid:always"))
		goto fail;
	if (sp->san && add_ext(c, iss, NID_subject_alt_name, sp->san))
		goto fail;
	if (sp->eku && add_ext(c, iss, NID_ext_key_usage, sp->eku))
		goto fail;
	if (!X509_sign(c, issuer_key, EVP_sha256()))
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

int64_t kz_ca_asn1_time_unix(const ASN1_TIME *t)
{
	struct tm tm;
	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

int64_t kz_cert_file_not_after(const char *path)
{
	int64_t nb, na;
	return kz_cert_file_validity(path, &nb, &na) ? 0 : na;
}

int kz_cert_file_validity(const char *path, int64_t *not_before, int64_t *not_after)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return KZ_ENOTFOUND;
	X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!c)
		return KZ_EMALFORMED;
	*not_before = kz_ca_asn1_time_unix(X509_get0_notBefore(c));
	*not_after = kz_ca_asn1_time_unix(X509_get0_notAfter(c));
	X509_free(c);
	return KZ_OK;
}

/* ---------- the issued list ---------- */

static const char *const crl_reasons[] = { "unspecified", "keyCompromise", "cACompromise",
					   "affiliationChanged", "superseded", "cessationOfOperation",
					   "certificateHold", NULL, "removeFromCRL", "privilegeWithdrawn",
					   "aACompromise" };

int kz_ca_reason_code(const char *r)
{
	for (int i = 0; i < (int)KZ_ARRAY_LEN(crl_reasons); i++)
		if (crl_reasons[i] && strcmp(crl_reasons[i], r) == 0)
			return i;
	return -1;
}

int kz_ca_parse_i64(const char *p, size_t n, int64_t *out)
{
	if (n == 1 && p[0] == '-') {
		*out = 0;
		return 0;
	}
	if (n == 0 || n > 18)
		return -1;
	int64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)p[i]))
			return -1;
		x = x * 10 + (p[i] - '0');
	}
	*out = x;
	return 0;
}

int kz_ca_parse_entry(const char *line, size_t n, struct kz_ca_entry *e, const char **why)
{
	const char *f[7];
	size_t fl[7];
	size_t k = 0, start = 0;
	memset(e, 0, sizeof *e);
	for (size_t i = 0; i <= n; i++) {
		if (i == n || line[i] == '\t') {
			if (k == 7) {
				*why = "more than 7 fields";
				return -1;
			}
			f[k] = line + start;
			fl[k++] = i - start;
			start = i + 1;
		}
	}
	if (k != 7) {
		*why = "expected 7 tab-separated fields";
		return -1;
	}
	if (fl[0] != 1 || (f[0][0] != 'V' && f[0][0] != 'R')) {
		*why = "status is not V or R";
		return -1;
	}
	e->status = f[0][0];
	if (fl[1] == 0 || fl[1] >= KZ_SERIAL_HEX) {
		*why = "bad serial";
		return -1;
	}
	for (size_t i = 0; i < fl[1]; i++)
		if (!isxdigit((unsigned char)f[1][i]) || islower((unsigned char)f[1][i])) {
			*why = "serial is not upper-case hex";
			return -1;
		}
	memcpy(e->serial, f[1], fl[1]);
	if (kz_ca_parse_i64(f[2], fl[2], &e->not_before) || kz_ca_parse_i64(f[3], fl[3], &e->not_after) ||
	    kz_ca_parse_i64(f[4], fl[4], &e->revoked_at)) {
		*why = "bad time";
		return -1;
	}
	if ((e->status == 'R') != (e->revoked_at != 0)) {
		*why = "revocation time does not match the status";
		return -1;
	}
	if (fl[5] >= sizeof e->reason || (fl[5] == 1 && f[5][0] == '-' && e->status == 'R')) {
		*why = "bad reason";
		return -1;
	}
	if (!(fl[5] == 1 && f[5][0] == '-')) {
		memcpy(e->reason, f[5], fl[5]);
		if (kz_ca_reason_code(e->reason) < 0) {
			*why = "unknown revocation reason";
			return -1;
		}
	}
	if (fl[6] >= sizeof e->id || kz_spiffe_check(f[6], fl[6], NULL)) {
		*why = "bad SPIFFE ID";
		return -1;
	}
	memcpy(e->id, f[6], fl[6]);
	return 0;
}

static void entry_format(const struct kz_ca_entry *e, char *out, size_t n)
{
	char ra[24] = "-";
	if (e->revoked_at)
		snprintf(ra, sizeof ra, "%lld", (long long)e->revoked_at);
	snprintf(out, n, "%c\t%s\t%lld\t%lld\t%s\t%s\t%s\n", e->status, e->serial, (long long)e->not_before,
		 (long long)e->not_after, ra, e->reason[0] ? e->reason : "-", e->id);
}


int kz_ca_issued_load(const struct kz_ca *ca, struct entries *es, char *why, size_t why_len)
{
	char *b;
	size_t len;
	memset(es, 0, sizeof *es);
	int rc = kz_ca_file_read(ca->dir, "issued", &b, &len);
	if (rc) {
		snprintf(why, why_len, "%s/issued: %s", ca->dir, kz_strerror(rc));
		return rc;
	}
	size_t line = 0;
	for (char *p = b; *p;) {
		char *nl = strchr(p, '\n');
		line++;
		if (!nl) {
			snprintf(why, why_len, "%s/issued:%zu: line has no end", ca->dir, line);
			rc = KZ_EMALFORMED;
			break;
		}
		if (es->n == es->cap) {
			size_t nc;
			struct kz_ca_entry *nv = kz_array_grow(es->v, sizeof *nv, es->cap, (size_t)es->cap + 1, 64, SIZE_MAX, &nc);
			if (!nv) {
				rc = KZ_ENOMEM;
				break;
			}
			es->v = nv;
			es->cap = nc;
		}
		const char *w;
		if (kz_ca_parse_entry(p, (size_t)(nl - p), &es->v[es->n], &w)) {
			snprintf(why, why_len, "%s/issued:%zu: %s", ca->dir, line, w);
			rc = KZ_EMALFORMED;
			break;
		}
		es->n++;
		p = nl + 1;
	}
	free(b);
	if (rc) {
		free(es->v);
		memset(es, 0, sizeof *es);
	}
	return rc;
}

int kz_ca_issued_store(const struct kz_ca *ca, const struct entries *es)
{
	size_t cap = es->n * 2300 + 1, n = 0;
	char *b = malloc(cap);
	if (!b)
		return KZ_ENOMEM;
	for (size_t i = 0; i < es->n; i++) {
		entry_format(&es->v[i], b + n, cap - n);
		n += strlen(b + n);
	}
	int rc = kz_file_replace(ca->dir, "issued", b, n, 0600);
	free(b);
	return rc;
}

static int issued_append(const struct kz_ca *ca, X509 *c, const char *id)
{
	struct kz_ca_entry e = { .status = 'V' };
	kz_x509_serial_hex(c, e.serial);
	e.not_before = kz_ca_asn1_time_unix(X509_get0_notBefore(c));
	e.not_after = kz_ca_asn1_time_unix(X509_get0_notAfter(c));
	snprintf(e.id, sizeof e.id, "%s", id);
	char line[2300], path[1200];
	entry_format(&e, line, sizeof line);
	if (kz_ca_path_of(path, sizeof path, ca->dir, "issued"))
		return KZ_EINVAL;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return KZ_EIO;
	size_t n = strlen(line);
	int rc = kz_write_all(fd, line, n) == 0 && fsync(fd) == 0 ? KZ_OK : KZ_EIO;
	close(fd);
	return rc;
}

/* Issues and records a client certificate for pub. */
/* names: "a.example,10.0.0.1,..." to the SAN value ",DNS:a.example,IP:10.0.0.1"; -1 with *why
 * for a name that is neither a DNS name nor an IP address. */
static int server_san(const char *names, char *out, size_t cap, char *why, size_t why_len)
{
	size_t n = 0;
	out[0] = 0;
	char *list = strdup(names), *sv = NULL;
	int rc = list ? 0 : -1;
	int count = 0;
	for (char *t = list ? strtok_r(list, ",", &sv) : NULL; t && !rc; t = strtok_r(NULL, ",", &sv)) {
		unsigned char a[16];
		bool ip = inet_pton(AF_INET, t, a) == 1 || inet_pton(AF_INET6, t, a) == 1;
		bool dns = *t && strlen(t) <= 253;
		for (const char *p = t; dns && *p; p++)
			dns = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
			      *p == '.' || (*p == '*' && p == t && p[1] == '.');
		if (!ip && !dns) {
			snprintf(why, why_len, "--server: '%s' is neither a DNS name nor an IP address", t);
			rc = -1;
			break;
		}
		int k = snprintf(out + n, cap - n, ",%s:%s", ip ? "IP" : "DNS", t);
		if (k < 0 || (size_t)k >= cap - n) {
			snprintf(why, why_len, "--server: too many names");
			rc = -1;
			break;
		}
		n += (size_t)k;
		count++;
	}
	if (!rc && count == 0) {
		snprintf(why, why_len, "--server: no name given");
		rc = -1;
	}
	free(list);
	return rc;
}

X509 *kz_ca_issue_for(struct kz_ca *ca, const char *id, EVP_PKEY *pub, uint32_t lifetime_s, const char *server,
		       char *why, size_t why_len)
{
	const char *bad = kz_spiffe_check(id, strlen(id), ca->td[0] ? ca->td : NULL);
	if (bad) {
		snprintf(why, why_len, "%s: %s", id, bad);
		return NULL;
	}
	if (lifetime_s == 0) {
		snprintf(why, why_len, "the lifetime must be at least one second");
		return NULL;
	}
	char san[4400], extra[2200] = "";
	if (server && server_san(server, extra, sizeof extra, why, why_len))
		return NULL;
	snprintf(san, sizeof san, "URI:%s%s", id, extra);
	const char *cn = strrchr(id, '/');
	/* a server (a NATS server, another service with a listener) also connects as a client:
	 * NATS routes are TLS connections between servers */
	struct cert_spec sp = { cn ? cn + 1 : id, lifetime_s, false, san, server ? "serverAuth,clientAuth" : "clientAuth" };
	X509 *c = cert_make(&sp, pub, ca->cert, ca->key);
	if (!c) {
		snprintf(why, why_len, "cannot sign a certificate for %s", id);
		return NULL;
	}
	int lk = kz_ca_lock(ca, why, why_len);
	int rc = lk < 0 ? KZ_EIO : issued_append(ca, c, id);
	if (lk >= 0)
		close(lk);
	if (rc) {
		if (lk >= 0) /* else why says the lock failed */
			snprintf(why, why_len, "cannot record the certificate in %s/issued: %s", ca->dir, strerror(errno));
		X509_free(c);
		return NULL;
	}
	return c;
}

/* ---------- the CA ---------- */

static int load_pair(const char *dir, X509 **cert, EVP_PKEY **key)
{
	char path[1200];
	if (kz_ca_path_of(path, sizeof path, dir, "ca.pem"))
		return KZ_EINVAL;
	FILE *f = fopen(path, "re");
	if (!f)
		return KZ_ENOTFOUND;
	*cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!key)
		return *cert ? KZ_OK : KZ_ETLS;
	kz_ca_path_of(path, sizeof path, dir, "ca.key");
	f = fopen(path, "re");
	if (!f)
		return KZ_ENOTFOUND;
	*key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return *cert && *key ? KZ_OK : KZ_ETLS;
}

int kz_ca_open(const char *dir, const char *td, struct kz_ca **out, char *why, size_t why_len)
{
	struct kz_ca *ca = calloc(1, sizeof *ca);
	if (!ca)
		return KZ_ENOMEM;
	snprintf(ca->dir, sizeof ca->dir, "%s", dir);
	int rc = load_pair(dir, &ca->cert, &ca->key);
	if (rc) {
		snprintf(why, why_len, rc == KZ_ENOTFOUND ? "no CA in %s (kizuna ca init)" : "cannot read the CA in %s",
			 dir);
		kz_ca_close(ca);
		return rc;
	}
	if (X509_check_private_key(ca->cert, ca->key) != 1) {
		snprintf(why, why_len, "%s/ca.key does not belong to %s/ca.pem", dir, dir);
		kz_ca_close(ca);
		return KZ_ETLS;
	}
	if (td && *td) {
		snprintf(ca->td, sizeof ca->td, "%s", td);
	} else {
		/* the trust domain of the CA's first identity, the admin */
		char path[1200];
		kz_ca_path_of(path, sizeof path, dir, "admin.pem");
		FILE *f = fopen(path, "re");
		X509 *a = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
		if (f)
			fclose(f);
		char *id = a ? kz_ca_cert_uri(a) : NULL;
		if (id && strncmp(id, "spiffe://", 9) == 0) {
			const char *s = strchr(id + 9, '/');
			if (s && (size_t)(s - id - 9) < sizeof ca->td)
				snprintf(ca->td, sizeof ca->td, "%.*s", (int)(s - id - 9), id + 9);
		}
		free(id);
		X509_free(a);
	}
	*out = ca;
	return KZ_OK;
}

void kz_ca_close(struct kz_ca *ca)
{
	if (!ca)
		return;
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	free(ca);
}

const char *kz_ca_dir(const struct kz_ca *ca) { return ca->dir; }

int kz_ca_create(const char *dir, const char *td, const char *org, uint32_t admin_lifetime_s, char *why, size_t why_len)
{
	char path[1200];
	if (kz_ca_path_of(path, sizeof path, dir, "ca.pem")) {
		snprintf(why, why_len, "path too long: %s", dir);
		return KZ_EINVAL;
	}
	if (access(path, F_OK) == 0)
		return 0;
	char admin[1024];
	snprintf(admin, sizeof admin, "spiffe://%s/%s/user/admin", td, org);
	const char *bad = kz_spiffe_check(admin, strlen(admin), NULL);
	if (bad) {
		snprintf(why, why_len, "trust domain '%s' or organisation '%s': %s", td, org, bad);
		return KZ_EINVAL;
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		snprintf(why, why_len, "cannot create %s: %s", dir, strerror(errno));
		return KZ_EIO;
	}
	int rc = KZ_ETLS;
	EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *srv_key = EVP_EC_gen("P-256");
	X509 *cac = NULL, *srv = NULL;
	struct cert_spec ca_sp = { "kizuna CA", 3650LL * 86400, true, NULL, NULL };
	struct cert_spec srv_sp = { "localhost", 825LL * 86400, false, "DNS:localhost,IP:127.0.0.1,IP:::1",
				    "serverAuth" };
	if (!ca_key || !srv_key)
		goto out;
	cac = cert_make(&ca_sp, ca_key, NULL, ca_key);
	srv = cac ? cert_make(&srv_sp, srv_key, cac, ca_key) : NULL;
	if (!srv)
		goto out;
	/* the key first: ca.pem is what marks the CA as present */
	char p2[1200];
	kz_ca_path_of(p2, sizeof p2, dir, "ca.key");
	rc = kz_ca_write_pem_file(p2, NULL, ca_key);
	kz_ca_path_of(p2, sizeof p2, dir, "server.pem");
	rc = rc ? rc : kz_ca_write_pem_file(p2, srv, NULL);
	kz_ca_path_of(p2, sizeof p2, dir, "server.key");
	rc = rc ? rc : kz_ca_write_pem_file(p2, NULL, srv_key);
	rc = rc ? rc : kz_ca_write_pem_file(path, cac, NULL);
	if (rc) {
		snprintf(why, why_len, "cannot write the CA into %s: %s", dir, strerror(errno));
		goto out;
	}
	struct kz_ca *ca = NULL;
	rc = kz_ca_open(dir, td, &ca, why, why_len);
	if (rc)
		goto out;
	char cert[1200], key[1200];
	kz_ca_path_of(cert, sizeof cert, dir, "admin.pem");
	kz_ca_path_of(key, sizeof key, dir, "admin.key");
	rc = kz_ca_issue(ca, admin, admin_lifetime_s ? admin_lifetime_s : 30u * 86400, NULL, cert, key, NULL, why,
			 why_len);
	rc = rc ? rc : kz_ca_write_crl(ca, why, why_len);
	kz_ca_close(ca);
	if (rc == KZ_OK)
		rc = 1;
out:
	if (rc < 0 && why[0] == 0)
		snprintf(why, why_len, "cannot create the CA in %s", dir);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(srv_key);
	X509_free(cac);
	X509_free(srv);
	return rc;
}

int kz_ca_issue(struct kz_ca *ca, const char *id, uint32_t lifetime_s, const char *server, const char *cert_out,
		const char *key_out, char serial_out[KZ_SERIAL_HEX], char *why, size_t why_len)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	if (!k) {
		snprintf(why, why_len, "cannot generate a P-256 key");
		return KZ_ETLS;
	}
	X509 *c = kz_ca_issue_for(ca, id, k, lifetime_s, server, why, why_len);
	int rc = KZ_ETLS;
	if (c) {
		/* the key first, so that a certificate on disk always has its key */
		rc = kz_ca_write_pem_file(key_out, NULL, k);
		rc = rc ? rc : kz_ca_write_pem_file(cert_out, c, NULL);
		if (rc)
			snprintf(why, why_len, "cannot write %s or %s: %s", key_out, cert_out, strerror(errno));
		if (serial_out)
			kz_x509_serial_hex(c, serial_out);
	}
	X509_free(c);
	EVP_PKEY_free(k);
	return rc;
}

int kz_ca_renew(struct kz_ca *ca, const char *cert_in, uint32_t lifetime_s, const char *cert_out,
		char serial_out[KZ_SERIAL_HEX], char *why, size_t why_len)
{
	FILE *f = fopen(cert_in, "re");
	X509 *old = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	if (!old) {
		snprintf(why, why_len, "cannot read a certificate from %s", cert_in);
		return KZ_EINVAL;
	}
	int rc = KZ_EINVAL;
	char *id = NULL;
	X509 *c = NULL;
	EVP_PKEY *capub = X509_get0_pubkey(ca->cert);
	if (X509_verify(old, capub) != 1) {
		snprintf(why, why_len, "%s was not issued by this CA", cert_in);
		goto out;
	}
	char serial[KZ_SERIAL_HEX];
	kz_x509_serial_hex(old, serial);
	struct entries es;
	rc = kz_ca_issued_load(ca, &es, why, why_len);
	if (rc)
		goto out;
	bool revoked = false;
	for (size_t i = 0; i < es.n; i++)
		if (strcmp(es.v[i].serial, serial) == 0 && es.v[i].status == 'R')
			revoked = true;
	free(es.v);
	if (revoked) {
		snprintf(why, why_len, "%s (serial %s) is revoked: issue a new identity instead", cert_in, serial);
		rc = KZ_EDENIED;
		goto out;
	}
	id = kz_ca_cert_uri(old);
	if (!id) {
		snprintf(why, why_len, "%s has no single URI SAN", cert_in);
		rc = KZ_EINVAL;
		goto out;
	}
	/* a server certificate keeps its DNS names and addresses */
	char names[2200] = "";
	size_t nn = 0;
	GENERAL_NAMES *gens = X509_get_ext_d2i(old, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		char buf[256] = "";
		if (g->type == GEN_DNS && g->d.dNSName->length < (int)sizeof buf) {
			memcpy(buf, g->d.dNSName->data, (size_t)g->d.dNSName->length);
		} else if (g->type == GEN_IPADD && (g->d.iPAddress->length == 4 || g->d.iPAddress->length == 16)) {
			inet_ntop(g->d.iPAddress->length == 4 ? AF_INET : AF_INET6, g->d.iPAddress->data, buf, sizeof buf);
		}
		if (buf[0] && nn + strlen(buf) + 2 < sizeof names)
			nn += (size_t)snprintf(names + nn, sizeof names - nn, "%s%s", nn ? "," : "", buf);
	}
	GENERAL_NAMES_free(gens);
	c = kz_ca_issue_for(ca, id, X509_get0_pubkey(old), lifetime_s, nn ? names : NULL, why, why_len);
	rc = !c ? KZ_ETLS : kz_ca_write_pem_file(cert_out, c, NULL);
	if (c && rc)
		snprintf(why, why_len, "cannot write %s: %s", cert_out, strerror(errno));
	if (c && serial_out)
		kz_x509_serial_hex(c, serial_out);
out:
	free(id);
	X509_free(c);
	X509_free(old);
	return rc;
}

int kz_ca_list(struct kz_ca *ca, void (*fn)(const struct kz_ca_entry *e, void *arg), void *arg, char *why,
	       size_t why_len)
{
	struct entries es;
	int rc = kz_ca_issued_load(ca, &es, why, why_len);
	if (rc)
		return rc;
	for (size_t i = 0; i < es.n; i++)
		fn(&es.v[i], arg);
	free(es.v);
	return KZ_OK;
}
