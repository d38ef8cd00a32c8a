/* fuzz_identity.c — identity extraction from a client certificate (DER): the checks every
 * client certificate passes in the handshake (net_tls_check_client_cert). Anything
 * accepted must be a spiffe:// ID in the trust domain with a known kind. */
#include "net/net.h"

#include <assert.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	X509 *cert = d2i_X509(NULL, &p, (long)size);
	if (!cert)
		return 0;
	char *id = NULL;
	const char *why = net_tls_check_client_cert(cert, "kizuna.local", &id);
	if (!why) {
		assert(id && strncmp(id, "spiffe://kizuna.local/", 22) == 0);
		assert(strstr(id, "/user/") || strstr(id, "/sensor/") || strstr(id, "/service/") ||
		       strstr(id, "/node/"));
	} else {
		assert(!id);
	}
	free(id);
	X509_free(cert);
	return 0;
}
