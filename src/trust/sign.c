/* sign.c — ML-DSA-65 signatures on files (see sign.h). */
#include "trust/sign.h"
#include "base/kz_err.h"
#include "base/kz_file.h"
#include "base/kz_hex.h"
#include "crypto/kz_crypto.h"
#include "crypto/kz_mldsa.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CTX "kizuna-policy"
#define MAX_FILE (64u << 20)

static int read_all(const char *path, uint8_t **out, size_t *n)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return KZ_EIO;
	struct stat st;
	if (fstat(fileno(f), &st) || st.st_size < 0 || (uint64_t)st.st_size > MAX_FILE) {
		fclose(f);
		return KZ_ETOOBIG;
	}
	*out = malloc((size_t)st.st_size + 1);
	*n = *out ? fread(*out, 1, (size_t)st.st_size, f) : 0;
	int bad = !*out || ferror(f) || *n != (size_t)st.st_size;
	fclose(f);
	if (bad) {
		free(*out);
		*out = NULL;
		return KZ_EIO;
	}
	return KZ_OK;
}

/* s holds a file's text: at least 2n characters of hex (the rest, e.g. a newline, ignored) */
static int unhex_text(const uint8_t *s, size_t slen, uint8_t *out, size_t n)
{
	return slen < 2 * n ? -1 : kz_unhex((const char *)s, out, n);
}

static int write_hex(const char *path, const uint8_t *p, size_t n, mode_t mode)
{
	char *h = malloc(2 * n + 2);
	int fd = h ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode) : -1;
	if (fd < 0) {
		free(h);
		return KZ_EIO;
	}
	kz_hex(p, n, h);
	h[2 * n] = '\n';
	int rc = kz_write_all(fd, h, 2 * n + 1) == 0 && close(fd) == 0 ? KZ_OK : KZ_EIO;
	free(h);
	return rc;
}

int kz_sign_keygen(const char *dir, char *why, size_t why_len)
{
	char kp[1100], pp[1100];
	snprintf(kp, sizeof kp, "%s/policy-signing.key", dir);
	snprintf(pp, sizeof pp, "%s/policy-signing.pub", dir);
	uint8_t xi[32];
	static uint8_t pk[KZ_MLDSA65_PK_BYTES], sk[KZ_MLDSA65_SK_BYTES];
	int fd = open(kp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(why, why_len, "cannot create %s: %s", kp, strerror(errno));
		return KZ_EIO;
	}
	int ok = RAND_priv_bytes(xi, sizeof xi) == 1 && kz_write_all(fd, xi, sizeof xi) == 0 && fsync(fd) == 0;
	close(fd);
	if (!ok) {
		unlink(kp);
		snprintf(why, why_len, "cannot write %s", kp);
		return KZ_EIO;
	}
	kz_mldsa65_keygen_seed(xi, pk, sk);
	OPENSSL_cleanse(xi, sizeof xi);
	OPENSSL_cleanse(sk, sizeof sk);
	if (write_hex(pp, pk, sizeof pk, 0644)) {
		snprintf(why, why_len, "cannot write %s", pp);
		return KZ_EIO;
	}
	snprintf(why, why_len, "%s", pp);
	return KZ_OK;
}

int kz_sign_file(const char *key_file, const char *file, char *why, size_t why_len)
{
	uint8_t *seed = NULL, *data = NULL;
	size_t sn, dn;
	if (read_all(key_file, &seed, &sn) || sn != 32) {
		snprintf(why, why_len, "%s is not a policy signing key (32 bytes)", key_file);
		free(seed);
		return KZ_EINVAL;
	}
	if (read_all(file, &data, &dn)) {
		snprintf(why, why_len, "cannot read %s", file);
		OPENSSL_cleanse(seed, 32);
		free(seed);
		return KZ_EIO;
	}
	static uint8_t pk[KZ_MLDSA65_PK_BYTES], sk[KZ_MLDSA65_SK_BYTES], sig[KZ_MLDSA65_SIG_BYTES];
	uint8_t rnd[32];
	kz_mldsa65_keygen_seed(seed, pk, sk);
	OPENSSL_cleanse(seed, 32);
	free(seed);
	int rc = RAND_priv_bytes(rnd, sizeof rnd) == 1 &&
			 kz_mldsa65_sign(sk, data, dn, (const uint8_t *)CTX, strlen(CTX), rnd, sig) == 0
		 ? KZ_OK
		 : KZ_ETLS;
	OPENSSL_cleanse(sk, sizeof sk);
	free(data);
	char sp[1100];
	snprintf(sp, sizeof sp, "%s.sig", file);
	if (!rc && write_hex(sp, sig, sizeof sig, 0644))
		rc = KZ_EIO;
	snprintf(why, why_len, rc ? "cannot sign %s" : "%s", rc ? file : sp);
	return rc;
}

int kz_verify_file(const char *pub_file, const char *file, char *why, size_t why_len)
{
	uint8_t *ph = NULL, *sh = NULL, *data = NULL;
	size_t pn, sn, dn;
	static uint8_t pk[KZ_MLDSA65_PK_BYTES], sig[KZ_MLDSA65_SIG_BYTES];
	char sp[1100];
	snprintf(sp, sizeof sp, "%s.sig", file);
	int rc = KZ_EDENIED;
	if (read_all(pub_file, &ph, &pn) || unhex_text(ph, pn, pk, sizeof pk))
		snprintf(why, why_len, "%s is not an ML-DSA-65 public key (hex)", pub_file);
	else if (read_all(sp, &sh, &sn) || unhex_text(sh, sn, sig, sizeof sig))
		snprintf(why, why_len, "%s: no valid signature file %s (kizuna policy sign)", file, sp);
	else if (read_all(file, &data, &dn))
		snprintf(why, why_len, "cannot read %s", file);
	else if (kz_mldsa65_verify(pk, sizeof pk, data, dn, (const uint8_t *)CTX, strlen(CTX), sig, sizeof sig))
		snprintf(why, why_len, "%s: the ML-DSA-65 signature in %s does not verify with %s (changed after signing?)",
			 file, sp, pub_file);
	else
		rc = KZ_OK;
	free(ph);
	free(sh);
	free(data);
	return rc;
}

/* ---------- the manifest ---------- */

static int file_sha256_hex(const char *path, char hex[65])
{
	uint8_t *b = NULL, h[32];
	size_t n = 0;
	if (read_all(path, &b, &n))
		return -1;
	kz_sha256(b, n, h);
	free(b);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	return 0;
}

static int manifest_read(const char *path, unsigned long long *seq, char ph[65], char rh[65])
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	int v = 0;
	int got = fscanf(f, "kizuna-policy-manifest %d seq %llu policy %64s registry %64s", &v, seq, ph, rh);
	fclose(f);
	return got == 4 && v == 1 && strlen(ph) == 64 && strlen(rh) == 64 ? 0 : -1;
}

int kz_manifest_sign(const char *key_file, const char *policy_file, const char *registry_file, unsigned long long seq,
		     unsigned long long *seq_out, char *why, size_t why_len)
{
	char man[4200], ph[65], rh[65], oph[65], orh[65];
	snprintf(man, sizeof man, "%s.manifest", policy_file);
	unsigned long long old = 0;
	if (!seq)
		seq = manifest_read(man, &old, oph, orh) == 0 ? old + 1 : 1;
	if (file_sha256_hex(policy_file, ph) || file_sha256_hex(registry_file, rh)) {
		snprintf(why, why_len, "cannot read %s or %s", policy_file, registry_file);
		return -1;
	}
	FILE *f = fopen(man, "w");
	if (!f || fprintf(f, "kizuna-policy-manifest 1\nseq %llu\npolicy %s\nregistry %s\n", seq, ph, rh) < 0 ||
	    fclose(f)) {
		snprintf(why, why_len, "cannot write %s: %s", man, strerror(errno));
		return -1;
	}
	*seq_out = seq;
	return kz_sign_file(key_file, man, why, why_len);
}

int kz_manifest_verify(const char *pub_file, const char *policy_file, const char *registry_file,
		       unsigned long long *seq, char *why, size_t why_len)
{
	char man[4200], ph[65], rh[65], fh[65];
	snprintf(man, sizeof man, "%s.manifest", policy_file);
	if (access(man, R_OK)) {
		snprintf(why, why_len, "%s: no signed manifest (kizuna policy sign --key KEY %s %s)", man, policy_file,
			 registry_file);
		return -1;
	}
	if (kz_verify_file(pub_file, man, why, why_len))
		return -1;
	if (manifest_read(man, seq, ph, rh)) {
		snprintf(why, why_len, "%s: not a policy manifest", man);
		return -1;
	}
	if (file_sha256_hex(policy_file, fh) || strcmp(fh, ph)) {
		snprintf(why, why_len, "%s is not the policy its signed manifest %s names (changed after signing, or "
			 "from another version)", policy_file, man);
		return -1;
	}
	if (file_sha256_hex(registry_file, fh) || strcmp(fh, rh)) {
		snprintf(why, why_len, "%s is not the registry the signed manifest %s names (changed after signing, or "
			 "a policy and a registry from different versions)", registry_file, man);
		return -1;
	}
	return 0;
}
