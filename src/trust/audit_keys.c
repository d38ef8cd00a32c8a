/* audit_keys.c — the audit log's checkpoint keys: Ed25519 (DIR/audit/audit.key) and
 * ML-DSA-65 (the seed in DIR/audit/audit.mldsa.key), made on a new log, public halves in
 * audit.pub and audit.mldsa.pub. */
#include "trust/audit_internal.h"
#include "base/kz_err.h"
#include "base/kz_file.h"
#include "base/kz_hex.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "crypto/kz_crypto.h"
#include "crypto/kz_mldsa.h"

#include <openssl/rand.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int kz_audit_load_key(struct kz_audit *a, char *why, size_t why_len)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/audit.key", a->dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t pub[32];
	if (fd >= 0) {
		ssize_t r = read(fd, a->priv, 32);
		close(fd);
		if (r != 32 || kz_ed25519_public(a->priv, pub)) {
			snprintf(why, why_len, "%s: not a 32-byte Ed25519 private key", path);
			return KZ_EIO;
		}
	} else {
		char pp[4200];
		snprintf(pp, sizeof pp, "%s/audit.pub", a->dir);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 || kz_ed25519_keygen(a->priv, pub) || kz_write_all(fd, (const char *)a->priv, 32) || fsync(fd)) {
			snprintf(why, why_len, "cannot create %s: %s", path, strerror(errno));
			if (fd >= 0)
				close(fd);
			return KZ_EIO;
		}
		close(fd);
		kz_info("audit: created the checkpoint signing key %s (keep a copy of audit.pub elsewhere)", path);
		(void)pp;
		a->new_keys = true;
	}
	kz_hex(pub, 32, a->pub_hex);
	snprintf(path, sizeof path, "%s/audit.pub", a->dir);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "%s\n", a->pub_hex);
		fclose(f);
	}
	/* ML-DSA-65: the 32-byte seed ξ in audit.mldsa.key, the public key (hex) in audit.mldsa.pub;
	 * a log from before has its key made now, and its checkpoints are signed from here on */
	uint8_t xi[32];
	static uint8_t dpk[KZ_MLDSA65_PK_BYTES];
	snprintf(path, sizeof path, "%s/audit.mldsa.key", a->dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t r = read(fd, xi, 32);
		close(fd);
		if (r != 32) {
			snprintf(why, why_len, "%s: not a 32-byte ML-DSA-65 seed", path);
			return KZ_EIO;
		}
	} else {
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 || RAND_priv_bytes(xi, 32) != 1 || kz_write_all(fd, (const char *)xi, 32) || fsync(fd)) {
			snprintf(why, why_len, "cannot create %s: %s", path, strerror(errno));
			if (fd >= 0)
				close(fd);
			return KZ_EIO;
		}
		close(fd);
		kz_info("audit: created the ML-DSA-65 checkpoint key %s (keep a copy of audit.mldsa.pub elsewhere)", path);
	}
	a->mldsa_sk = malloc(KZ_MLDSA65_SK_BYTES);
	if (!a->mldsa_sk)
		return KZ_ENOMEM;
	kz_mldsa65_keygen_seed(xi, dpk, a->mldsa_sk);
	OPENSSL_cleanse(xi, sizeof xi);
	snprintf(path, sizeof path, "%s/audit.mldsa.pub", a->dir);
	f = fopen(path, "w");
	if (f) {
		for (size_t i = 0; i < sizeof dpk; i++)
			fprintf(f, "%02x", dpk[i]);
		fputc('\n', f);
		fclose(f);
	}
	return KZ_OK;
}
