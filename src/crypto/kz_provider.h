/* kz_provider.h — the "kizuna" OpenSSL 3 provider: the hybrid TLS 1.3 group X25519MLKEM768
 * (docs/PQC.md). */
#ifndef KZ_PROVIDER_H
#define KZ_PROVIDER_H

#include <openssl/core.h>

#define KZ_TLS_GROUP_X25519MLKEM768 0x11EC

/* Adds and loads the provider (and "default") into OpenSSL's default library context, once,
 * before any SSL_CTX is made. 0, or -1 on failure. */
int kz_provider_load(void);
/* The provider's init function (what OSSL_PROVIDER_add_builtin takes). */
int kz_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in, const OSSL_DISPATCH **out,
		     void **provctx);

#endif
