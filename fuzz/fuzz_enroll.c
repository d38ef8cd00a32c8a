/* fuzz_enroll.c — the parsers of the CA: the enrolment request that a client without a
 * certificate sends over the network (kz_enroll_parse, first byte 0..127), and a line of the
 * issued list (kz_ca_parse_entry, first byte 128..255). Fed in pieces, the request parser
 * must agree with itself: a complete prefix means the whole parses the same. A first byte of
 * 64..127 selects the tokens-file line parser (kz_ca_parse_token). */
#include "trust/ca.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	if (data[0] >= 128) {
		struct kz_ca_entry e;
		const char *why = NULL;
		if (kz_ca_parse_entry(p, n, &e, &why) == 0) {
			assert(e.status == 'V' || e.status == 'R');
			assert(e.serial[0] && strlen(e.serial) < KZ_SERIAL_HEX);
			assert(kz_spiffe_check(e.id, strlen(e.id), NULL) == NULL);
		} else {
			assert(why && why[0]);
		}
		return 0;
	}
	if (data[0] >= 64) {
		struct kz_ca_token t;
		if (kz_ca_parse_token(p, n, &t) == 0) {
			assert(strlen(t.hash) == 64 && t.lifetime > 0);
			assert(kz_spiffe_check(t.id, strlen(t.id), NULL) == NULL);
		}
		return 0;
	}
	const char *tok, *csr, *why = NULL;
	size_t tl, cl;
	int r = kz_enroll_parse(p, n, &tok, &tl, &csr, &cl, &why);
	if (r == 0) {
		assert(tok > p && tok + tl <= p + n && tl > 0 && tl <= 128);
		assert(csr > tok && csr + cl <= p + n);
		/* the same request with more bytes after it parses the same */
		const char *tok2, *csr2, *why2;
		size_t tl2, cl2;
		assert(kz_enroll_parse(p, (size_t)(csr + cl - p), &tok2, &tl2, &csr2, &cl2, &why2) == 0);
		assert(tok2 == tok && tl2 == tl && csr2 == csr && cl2 == cl);
	} else if (r < 0) {
		assert(why && why[0]);
	}
	/* a complete prefix makes the whole complete, with the same fields (the node parses
	 * whatever chunks the network delivers) */
	if (n > 1) {
		const char *t3, *c3, *w3;
		size_t l3, m3;
		if (kz_enroll_parse(p, n / 2, &t3, &l3, &c3, &m3, &w3) == 0)
			assert(r == 0 && t3 == tok && l3 == tl && c3 == csr && m3 == cl);
	}
	return 0;
}
