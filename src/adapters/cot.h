/* cot.h — Cursor-on-Target (CoT 2.0 XML events, as TAK clients stream them) for the TAK
 * endpoint (docs/ADAPTERS.md "TAK"): a stream splitter that finds each <event>...</event> in
 * bytes sent back to back (prologs, whitespace and garbage between them skipped), an expat
 * parse of each event with DTDs and entity declarations refused and caps on size, depth and
 * elements, the event as an entity update, and an entity as a CoT event.
 *
 * The splitter's states:
 *
 *   SEEK --"<event"--> IN_EVENT --"</event>" or "/>" at its end--> parse, SEEK
 *              IN_EVENT --"<![CDATA[" / "<!--"--> SKIP --"]]>" / "-->"--> IN_EVENT
 *              IN_EVENT --over max_event_bytes--> dropped (counted), SEEK
 *
 * Not thread safe: one reader per connection. */
#ifndef KZ_COT_H
#define KZ_COT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kz_buf;

#define COT_UID_MAX 128
#define COT_TYPE_MAX 64

struct cot_event {
	char uid[COT_UID_MAX + 1];
	char type[COT_TYPE_MAX + 1];
	char how[16];
	uint64_t time_ns, start_ns, stale_ns;
	bool has_point;
	double lat, lon, hae, ce, le;   /* CoT's "unknown" is 9999999.0 for hae, ce, le */
	char callsign[128];
	bool has_track;
	double speed, course;           /* m/s, degrees */
	char remarks[512];
	char access[64];                /* the event's access attribute (classification) */
	char caveat[64], releasable[128]; /* caveat and releaseableTo attributes */
	int tak_request;                /* detail/TakControl/TakRequest@version: 0 none, -1 not a number */
	const char *xml;                /* the event's bytes as received (valid in the callback) */
	size_t xml_len;
	size_t detail_off, detail_len;  /* the children of <detail> within xml (0, 0: none) */
};

typedef void (*cot_event_fn)(void *ctx, const struct cot_event *e);
/* why: a refused event (its reason; the stream goes on). */
typedef void (*cot_error_fn)(void *ctx, const char *why);

struct cot_reader;
struct cot_reader *cot_reader_new(size_t max_event_bytes, cot_event_fn on_event, cot_error_fn on_error, void *ctx);
void cot_reader_free(struct cot_reader *r);
/* Bytes as they come. Each complete event goes to on_event or on_error. */
void cot_reader_feed(struct cot_reader *r, const char *p, size_t n);
/* Called from on_event: the reader stops after this event (the connection changes protocol,
 * docs/ADAPTERS.md "TAK Protocol version 1"); the bytes after it, not parsed, are then those
 * cot_reader_rest() gives. */
void cot_reader_stop(struct cot_reader *r);
const char *cot_reader_rest(const struct cot_reader *r, size_t *n);
/* Parses one complete event text (for tests and `kizuna adapter decode cot`): 0, or -1 with
 * *why. */
int cot_parse(const char *xml, size_t n, struct cot_event *e, const char **why);

/* A position report (type a-*) as an entity update for kz/entity/<id>: the id is
 * "cot:<uid>" when the uid is made of [A-Za-z0-9._:@~-], else "cot:" and the uid's other
 * characters replaced by '_' plus an 8-hex-digit hash. 0; KZ_EINVAL when it is not a
 * position report with a point. */
int cot_to_entity(const struct cot_event *e, struct kz_buf *b, char *id, size_t id_cap);

/* The uid as one topic level / entity id part: itself when it is made of
 * [A-Za-z0-9._:@~-] (and at most 120 bytes), else its other characters as '_' and "-" plus
 * 8 hex digits of its hash. */
void cot_uid_name(const char *uid, char *out, size_t cap);

/* An entity as a CoT event for TAK clients (the fields a picture needs). */
struct cot_out {
	const char *uid, *type, *callsign, *remarks;
	const char *access, *releasable; /* event attributes, NULL: none */
	uint64_t time_ns, stale_ns;
	bool has_point;
	double lat, lon, hae, ce, le;   /* NAN: unknown */
	bool has_track;
	double speed, course;
};
int cot_write(const struct cot_out *o, struct kz_buf *b);
/* s as XML attribute value or text: quotes, ampersands and angle brackets escaped, control
 * characters XML 1.0 does not allow (all but tab, CR, LF) left out. */
int cot_xml_text(struct kz_buf *b, const char *s);

#endif
