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

#endif
