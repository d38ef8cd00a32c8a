/* stix.h — STIX 2.1 objects: validation on write, the patterning language, timestamps and
 * TLP marking definitions (docs/STIX.md).
 *
 * Validation follows STIX 2.1 (OASIS Standard, 10 June 2021): the common properties (§3.2),
 * identifiers (§2.9: type--UUID), timestamps (§2.14; created/modified to the millisecond),
 * references (§2.10: *_ref / *_refs hold identifiers), the required properties of each SDO,
 * SRO, SCO and meta object (§4–§7), and patterns (§9) when pattern_type is "stix". Each
 * refusal names the property and what is wrong with it. */
#ifndef KZ_STIX_H
#define KZ_STIX_H

#include "base/kz_json.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STIX_TYPE_MAX 250
#define STIX_ID_MAX (STIX_TYPE_MAX + 2 + 36 + 1)
#define STIX_MAX_MARKINGS 256 /* object_marking_refs of one object */

enum stix_kind { STIX_SDO = 1, STIX_SRO, STIX_SCO, STIX_META, STIX_CUSTOM_OBJECT };

/* What validation found out about an object (for the indexes and the label). */
struct stix_info {
	char type[STIX_TYPE_MAX + 1];
	char id[STIX_ID_MAX];
	uint8_t uuid[16];
	enum stix_kind kind;
	int64_t created_us;       /* INT64_MIN when the object has none (SCOs) */
	int64_t modified_us;      /* = created_us when the object has no modified */
	uint8_t tlp;              /* enum kz_tlp of its object_marking_refs, 0 when none */
	char created_by_ref[STIX_ID_MAX];
	bool custom;              /* a custom object type or x_ / custom properties */
	bool tlp_rewritten;       /* object_marking_refs are stored otherwise: TLP 1.0 / OpenCTI ids
				   * become TLP 2.0 ids, repeats go (stix_rewrite) */
};

struct stix_opts {
	bool allow_custom;
	/* Is this marking-definition id resolvable (in the same request or the collection)?
	 * TLP ids are always. NULL: only TLP ids resolve. */
	bool (*marking_known)(void *ctx, const char *id);
	void *ctx;
	int64_t now_us;           /* timestamps after this + a day are refused (clock errors) */
};

/* Validates o (a JSON object parsed by kz_json) as a STIX 2.1 object. 0 and *info on
 * success; -1 with err ("property: what is wrong") otherwise. o is not changed: when
 * info->tlp_rewritten, store stix_rewrite's text instead of the object's own. */
int stix_validate(const struct kz_json *o, const struct stix_opts *opts, struct stix_info *info, char *err, size_t err_len);
/* The object's object_marking_refs as kizuna keeps them (kizuna emits TLP 2.0): TLP 1.0
 * and OpenCTI AMBER+STRICT ids as the TLP 2.0 ones, each id once, in their order. The
 * count; the strings live as long as o's document. */
size_t stix_markings(const struct kz_json *o, const char *out[STIX_MAX_MARKINGS]);
/* The text of object o (parsed from text) with its object_marking_refs as stix_markings
 * gives them; the rest byte for byte. malloc'd, *len its length; NULL when out of memory. */
char *stix_rewrite(const char *text, const struct kz_json *o, size_t *len);

/* An RFC 3339 STIX timestamp (YYYY-MM-DDTHH:MM:SS[.fraction]Z) to microseconds since the
 * epoch; *frac receives the number of fraction digits. -1 when malformed. */
int stix_timestamp(const char *s, int64_t *us, int *frac);
/* Formats microseconds as YYYY-MM-DDTHH:MM:SS.ffffffZ (28 bytes incl. NUL for years 0-9999; out has room for any). */
void stix_format_us(int64_t us, char out[64]);

/* Parses a STIX pattern (§9, the STIXPattern.g4 grammar). 0 when valid, else -1 with err
 * naming the offset and what was expected. Nesting deeper than 64 is refused. */
int stix_pattern_check(const char *p, size_t n, char *err, size_t err_len);

/* TLP: the level (enum kz_tlp) of a marking-definition id — TLP 2.0, TLP 1.0 or OpenCTI's
 * AMBER+STRICT — or 0 when it is not a TLP marking. */
int stix_tlp_of(const char *marking_id);
/* The TLP 2.0 marking-definition id of a level (NULL for 0). */
const char *stix_tlp2_id(int tlp);
/* The TLP 2.0 marking-definition object of a level, as JSON text (static). */
const char *stix_tlp2_object(int tlp);

#endif
