/* fuzz_trust_bundle.c — a KZ_TRUST policy bundle from another node (node_trust_bundle_parse):
 * the parts it returns lie within the input, in order, and cover it exactly. */
#include "node/node_trust.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *part[4];
	size_t len[4];
	if (node_trust_bundle_parse(data, size, part, len))
		return 0;
	const uint8_t *at = data + 4;
	for (int i = 0; i < 4; i++) {
		assert(part[i] == at + 4 && part[i] + len[i] <= data + size);
		at = part[i] + len[i];
	}
	assert(at == data + size);
	return 0;
}
