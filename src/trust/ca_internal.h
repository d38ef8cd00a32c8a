/* ca_internal.h — what the CA's files share (ca.c: identities, files, certificates, the
 * issued list and the CA itself; ca_revoke.c: revocation, the CRL and the revocation set;
 * ca_enroll.c: enrolment tokens and enrolment). Not for use outside src/trust/ca*.c. */
#ifndef KZ_CA_INTERNAL_H
#define KZ_CA_INTERNAL_H

#include "trust/ca.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRL_DAYS 7
#define ISSUED_MAX (64u << 20) /* the issued and tokens files are read whole: a sanity cap */

struct kz_ca {
	char dir[1024];
	char td[256];
	X509 *cert;
	EVP_PKEY *key;
};

struct entries {
	struct kz_ca_entry *v;
	size_t n, cap;
};

int kz_ca_serial_hex(const ASN1_INTEGER *sn, char out[KZ_SERIAL_HEX]);
char *kz_ca_cert_uri(X509 *c);
int kz_ca_path_of(char *out, size_t n, const char *dir, const char *name);
int kz_ca_file_read(const char *dir, const char *name, char **out, size_t *len);
int kz_ca_write_pem_file(const char *path, X509 *cert, EVP_PKEY *key);
int64_t kz_ca_asn1_time_unix(const ASN1_TIME *t);
int kz_ca_reason_code(const char *r);
int kz_ca_parse_i64(const char *p, size_t n, int64_t *out);
int kz_ca_issued_load(const struct kz_ca *ca, struct entries *es, char *why, size_t why_len);
int kz_ca_issued_store(const struct kz_ca *ca, const struct entries *es);
X509 *kz_ca_issue_for(struct kz_ca *ca, const char *id, EVP_PKEY *pub, uint32_t lifetime_s, const char *server,
		       char *why, size_t why_len);
int kz_ca_lock(const struct kz_ca *ca, char *why, size_t why_len);

#endif
