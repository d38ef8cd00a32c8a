/* sign.h — ML-DSA-65 signatures on files (the policy file and the identity registry):
 * FILE.sig holds the hex signature of FILE's bytes, context "kizuna-policy" (docs/POLICY.md).
 * Keys: a 32-byte seed (NAME.key, 0600) and the public key in hex (NAME.pub). */
#ifndef KZ_SIGN_H
#define KZ_SIGN_H

#include <stddef.h>

/* Writes DIR/policy-signing.key and DIR/policy-signing.pub (refuses to overwrite). */
int kz_sign_keygen(const char *dir, char *why, size_t why_len);
/* Signs FILE with the seed in key_file, writing FILE.sig. */
int kz_sign_file(const char *key_file, const char *file, char *why, size_t why_len);
/* 0 when FILE.sig is a valid signature of FILE's current bytes by the key in pub_file. */
int kz_verify_file(const char *pub_file, const char *file, char *why, size_t why_len);

/* One manifest signs a policy and its registry together (issue 25: no mixing, no rollback):
 * POLICY.manifest is the text
 *   kizuna-policy-manifest 1
 *   seq N
 *   policy SHA256-HEX
 *   registry SHA256-HEX
 * and POLICY.manifest.sig its signature. kz_manifest_sign writes both, with seq (0: one more
 * than the manifest already there, or 1). */
int kz_manifest_sign(const char *key_file, const char *policy_file, const char *registry_file, unsigned long long seq,
		     unsigned long long *seq_out, char *why, size_t why_len);
/* Verifies POLICY.manifest.sig with pub_file and that both files are the ones it names;
 * *seq receives its sequence number. 0, or -1 with *why. */
int kz_manifest_verify(const char *pub_file, const char *policy_file, const char *registry_file,
		       unsigned long long *seq, char *why, size_t why_len);

#endif
