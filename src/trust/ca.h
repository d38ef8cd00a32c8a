/* ca.h — kizuna's certificate authority, its enrolment protocol and the revocation set the
 * node checks (docs/CA.md).
 *
 * A CA directory (the node's DIR/pki) holds:
 *   ca.pem, ca.key        the CA: ECDSA P-256, self-signed, cA=TRUE pathlen 0
 *   server.pem/.key       the node's TLS server certificate (made by kz_ca_create)
 *   admin.pem/.key        the first operator identity (made by kz_ca_create)
 *   issued                every certificate the CA issued, one line each:
 *                         STATUS SERIAL NOT_BEFORE NOT_AFTER REVOKED_AT REASON SPIFFE-ID
 *                         (tab separated; STATUS V or R; times in Unix seconds, "-" if none)
 *   tokens                enrolment tokens, one line each, only the token's SHA-256 kept:
 *                         SHA256-HEX EXPIRES LIFETIME USED_AT SPIFFE-ID
 *   crl.pem               the CRL (X.509 v2, signed by the CA), rewritten on every revocation
 *   ca.lock               flock(2) lock serialising every writer (CLI commands, the node)
 * Files are replaced atomically (write, fsync, rename, fsync the directory).
 *
 * Enrolment (over the node's TLS listener, ALPN "kizuna-enroll/1", no client certificate):
 *   request   "ENROLL " TOKEN "\n" CSR-PEM            (the CSR ends the request)
 *   answer    "OK\n" LEAF-PEM CA-PEM  |  "ERROR " CODE " " MESSAGE "\n"
 * The enrolling machine generates its key; only the CSR (its public key, with a proof of
 * possession) travels. The SPIFFE ID and lifetime come from the token, never from the CSR. */
#ifndef KZ_CA_H
#define KZ_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KZ_ENROLL_ALPN "kizuna-enroll/1"
#define KZ_SERIAL_HEX 41 /* RFC 5280 serials are at most 20 octets: 40 hex digits + NUL */

struct x509_st;
struct kz_ca;

/* The rules of an identity: spiffe://<trust_domain>/<org>/<kind>/<name>, path segments of
 * [A-Za-z0-9._-] (SPIFFE-ID §2.2), kind user, sensor, service or node. trust_domain NULL or
 * "" accepts any. NULL when valid, else why not. */
const char *kz_spiffe_check(const char *id, size_t n, const char *trust_domain);
/* A certificate's serial number as upper-case hex (OpenSSL's BN_bn2hex form). */
int kz_x509_serial_hex(const struct x509_st *cert, char out[KZ_SERIAL_HEX]);

/* The serial of the certificate in a PEM file. */
int kz_cert_file_serial(const char *path, char out[KZ_SERIAL_HEX], char *why, size_t why_len);

/* Creates DIR (mode 0700) with a new CA, a server certificate (SAN localhost, 127.0.0.1,
 * ::1) and an admin client certificate spiffe://<td>/<org>/user/admin. Returns 1 when it
 * created them, 0 when DIR/ca.pem already existed (nothing touched), negative with *why. */
int kz_ca_create(const char *dir, const char *trust_domain, const char *org, uint32_t admin_lifetime_s, char *why,
		 size_t why_len);
/* Loads DIR/ca.pem and DIR/ca.key. The trust domain is the one of DIR/admin.pem, or of the
 * first issued identity; NULL = any. */
int kz_ca_open(const char *dir, const char *trust_domain, struct kz_ca **out, char *why, size_t why_len);
void kz_ca_close(struct kz_ca *ca);
const char *kz_ca_dir(const struct kz_ca *ca);

/* Issues a client certificate for spiffe_id valid lifetime_s seconds from now (notBefore is
 * backdated 5 minutes for clock skew): a new P-256 key is generated here and both written
 * (key 0600). server (NULL: none): "name,address,...", DNS names and IP addresses that make it
 * a server certificate too (a NATS server's: serverAuth and clientAuth). serial_out (may be
 * NULL) receives the serial. */
int kz_ca_issue(struct kz_ca *ca, const char *spiffe_id, uint32_t lifetime_s, const char *server,
		const char *cert_out, const char *key_out, char serial_out[KZ_SERIAL_HEX], char *why, size_t why_len);
/* A new certificate for the same identity and public key as cert_in, valid lifetime_s from
 * now, written to cert_out. The old one stays valid until it expires or is revoked. */
int kz_ca_renew(struct kz_ca *ca, const char *cert_in, uint32_t lifetime_s, const char *cert_out,
		char serial_out[KZ_SERIAL_HEX], char *why, size_t why_len);
/* Marks SERIAL revoked (reason: an RFC 5280 CRLReason name, e.g. keyCompromise, or NULL for
 * unspecified) and rewrites crl.pem. KZ_ENOTFOUND when the CA never issued it, KZ_EEXIST
 * when it was already revoked. */
int kz_ca_revoke(struct kz_ca *ca, const char *serial, const char *reason, char *why, size_t why_len);
/* Rewrites crl.pem (valid crl_days) from the issued list. */
int kz_ca_write_crl(struct kz_ca *ca, char *why, size_t why_len);

struct kz_ca_entry {
	char status;          /* 'V' or 'R' */
	char serial[KZ_SERIAL_HEX];
	int64_t not_before, not_after, revoked_at; /* revoked_at 0 when not revoked */
	char reason[32];
	char id[2100];
};
/* "valid", "expired" (not_after <= now, Unix s) or "revoked". */
const char *kz_ca_entry_status(const struct kz_ca_entry *e, int64_t now);
/* Calls fn for every issued certificate, oldest first. */
int kz_ca_list(struct kz_ca *ca, void (*fn)(const struct kz_ca_entry *e, void *arg), void *arg,
	       char *why, size_t why_len);
/* One line of the issued file (without its newline) into e; 0, or -1 with *why. */
int kz_ca_parse_entry(const char *line, size_t n, struct kz_ca_entry *e, const char **why);

/* One line of the tokens file: SHA256-HEX EXPIRES LIFETIME USED_AT SPIFFE-ID. 0, or -1. */
struct kz_ca_token {
	char hash[65];
	int64_t expires, used_at;
	uint32_t lifetime;
	char id[2100];
};
int kz_ca_parse_token(const char *line, size_t n, struct kz_ca_token *t);

/* A single-use enrolment token for spiffe_id, usable for ttl_s seconds, whose certificate
 * will be valid lifetime_s. token_out receives "kzt1_" + 43 base64url characters. */
#define KZ_TOKEN_LEN 49
int kz_ca_token(struct kz_ca *ca, const char *spiffe_id, uint32_t ttl_s, uint32_t lifetime_s,
		char token_out[KZ_TOKEN_LEN], char *why, size_t why_len);

/* ---------- enrolment protocol ---------- */

/* Parses a request buffer: 0 when complete (*token, *csr point into buf), 1 when more bytes
 * are needed, -1 when malformed (*why). */
int kz_enroll_parse(const char *buf, size_t n, const char **token, size_t *token_len, const char **csr,
		    size_t *csr_len, const char **why);
/* Serves one complete request: checks and consumes the token (single use, not expired),
 * checks the CSR (P-256 key, valid self-signature), issues the certificate. Returns the
 * answer to send (malloc'd, NUL-terminated) and sets *allowed, *id (the token's SPIFFE ID
 * when known, else "") and *reason for the audit log. */
char *kz_enroll_serve(struct kz_ca *ca, const char *token, size_t token_len, const char *csr,
		      size_t csr_len, uint32_t max_lifetime_s, bool *allowed, char id[2100], char *reason,
		      size_t reason_len);
/* The enrolling side: generates a P-256 key, connects to host:port (TLS 1.3, the server
 * verified against ca_file), sends the token and a CSR, writes out_dir/cert.pem,
 * out_dir/key.pem (0600) and out_dir/ca.pem. On refusal *why has the node's code and
 * message. */
int kz_enroll_client(const char *host, int port, const char *ca_file, const char *token, const char *out_dir,
		     char *id_out, size_t id_len, char *why, size_t why_len);

/* The notAfter (Unix s) of the first certificate in a PEM file; 0 when unreadable. */
int64_t kz_cert_file_not_after(const char *path);
/* Both ends of the validity of the first certificate in a PEM file (Unix s). 0, or an error. */
int kz_cert_file_validity(const char *path, int64_t *not_before, int64_t *not_after);

/* ---------- the revocation set the node checks ---------- */

struct kz_revoked {
	uint64_t gen;
	size_t n;
	char (*serial)[KZ_SERIAL_HEX]; /* sorted */
	int64_t this_update, next_update;
	uint64_t number;   /* the CRL number extension (0: none) */
	bool missing;      /* there was no CRL file: the set is empty */
};
/* Loads a CRL and checks its signature against ca_file. A missing CRL file gives an empty
 * set. NULL with *why when the CRL is unreadable, not signed by the CA, or malformed. */
struct kz_revoked *kz_revoked_load(const char *crl_file, const char *ca_file, char *why, size_t why_len);
bool kz_revoked_has(const struct kz_revoked *r, const char *serial);
void kz_revoked_free(struct kz_revoked *r);

/* A duration: a number with s, m, h or d (no unit: seconds). 0, or -1 when malformed. */
int kz_parse_duration(const char *s, uint64_t *seconds);

/* A PKCS#12 file at out_path (mode 0600) with the certificate, its key and (ca_path not NULL)
 * the CA certificate, protected by password (ca_p12.c). 0, or -1 with *why. */
int kz_ca_export_p12(const char *cert_path, const char *key_path, const char *ca_path, const char *password,
		     const char *out_path, char *why, size_t why_len);

#endif
