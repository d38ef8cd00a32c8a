/* detect.h — indicator detection (docs/DETECTION.md): indicators compiled into typed matching
 * structures, sensor log events turned into observables, matches into STIX sightings.
 *
 *   indicators (STIX 2.1 indicator objects with pattern_type stix; Zeek intel lines)
 *       --detect_add_stix / detect_add_zeek_intel--> compiled terms in the index:
 *          addresses: one hash table per prefix length present (exact = /32 or /128)
 *          domains:   a hash table of names; a lookup walks the name's suffixes
 *          URLs, e-mail addresses: hash tables of normalised text
 *          hashes:    one table per algorithm of fixed-width binary keys
 *   events (Zeek TSV and JSON, Suricata EVE JSON, syslog)
 *       --detect_feed--> observables (kind, role, value) --detect_index_match--> hits
 *       --terms satisfied--> a match (indicator, event, observable)
 *
 * An index is built, then read: lookups take no lock. The node swaps a whole index for a new
 * one (detect_service, RCU style); detect_index_* functions are not thread safe for writers.
 * Every hash table is keyed with the process's random SipHash key (kz_hash). */
#ifndef KZ_DETECT_H
#define KZ_DETECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kz_buf;
struct kz_json;

/* What an observable is. */
enum detect_kind {
	DETECT_IP = 1,     /* an IPv4 or IPv6 address (IPv4 as ::ffff:a.b.c.d) */
	DETECT_DOMAIN,
	DETECT_URL,        /* normalised (detect_url_norm) */
	DETECT_EMAIL,
	DETECT_MD5,
	DETECT_SHA1,
	DETECT_SHA256,
	DETECT_CERT_SHA1,  /* x509-certificate:hashes */
	DETECT_CERT_SHA256,
	DETECT_KINDS
};

/* Which end of a connection an address was (network-traffic:src_ref / dst_ref). */
enum detect_role { DETECT_ANY = 0, DETECT_SRC, DETECT_DST };

/* One observable of an event: value is text as the log had it (an address, a name, a hex
 * hash); field is the log's field name, for the sighting. Borrowed for the call. */
struct detect_obs {
	uint8_t kind, role;
	const char *value;
	size_t len;
	const char *field;
};

/* ---------- normalisation (exposed for tests) ---------- */

/* An address, with an optional /prefix: 16 bytes (IPv4 mapped into ::ffff:0:0/96) and the
 * prefix length on that scale (IPv4 /24 is 120). 0; -1 when it is not an address. */
int detect_ip_parse(const char *s, size_t n, uint8_t out[16], unsigned *prefix);
/* A domain name: lower case, no trailing dot, labels of [a-z0-9-_] (punycode as it is);
 * 0 and its length; -1 when it is not a name. */
int detect_domain_norm(const char *s, size_t n, char *out, size_t cap, size_t *len);
/* A URL: scheme and host lower case, the scheme's default port and the fragment dropped,
 * percent-escapes of unreserved characters decoded, a missing scheme read as http and a
 * missing path as "/". 0; -1 when it is not a URL. */
int detect_url_norm(const char *s, size_t n, char *out, size_t cap, size_t *len);

/* ---------- the index ---------- */

struct detect_index;

struct detect_indicator_info {
	char id[64];               /* indicator--<uuid> (of a Zeek intel line: a UUIDv5 of its file
				    * name and its value) */
	char pattern[600];         /* a Zeek intel line's indicator as a STIX pattern; "" for STIX */
	int64_t valid_from_us, valid_until_us; /* INT64_MIN / INT64_MAX when open */
	const char *label;         /* the label its sightings carry at least ("" none) */
	const char *source;        /* where it came from (a collection, a file) */
	const char *author;        /* who shared it (a SPIFFE ID; "" when not known) */
};	/* the strings live in the index: valid during the match callback */

#define DETECT_TYPES 8
struct detect_stats {
	uint64_t indicators, atoms[DETECT_KINDS], unsupported, suppressed, replaced, revoked, removed;
	uint64_t bytes;            /* memory the index holds */
	uint64_t by_type[DETECT_TYPES]; /* live indicators with a comparison on that type */
};
/* The types of by_type: ip, domain, url, email, md5, sha1, sha256, x509. */
extern const char *const detect_type_names[DETECT_TYPES];

struct detect_index *detect_index_new(void);
void detect_index_free(struct detect_index *x);

/* Adds a STIX 2.1 indicator object (parsed JSON). 0 when added (a newer version of an
 * indicator it has replaces it; a revoked version removes it; the same or an older version
 * changes nothing);
 * 1 when it is not for detection here: *why says which part (pattern_type not stix, an
 * operator or object path outside the subset), and the indicator is counted and listed
 * as unsupported; -1 with *why when the object is not an indicator. label: its label. */
int detect_add_stix(struct detect_index *x, const struct kz_json *o, const char *label, const char *source,
		    const char **why);
/* Adds one line of a Zeek intel file (fields: the #fields header's, tab-separated). 0;
 * 1 unsupported type (listed); -1 malformed. */
int detect_add_zeek_intel(struct detect_index *x, const char *const *fields, const char *const *names, size_t n,
			  const char *label, const char *source, unsigned line, const char **why);
/* The same, shared by author (a SPIFFE ID: the sightings' TAXII records are filed under it,
 * docs/DETECTION.md "Labels"). */
int detect_add_stix_by(struct detect_index *x, const struct kz_json *o, const char *label, const char *source,
		       const char *author, const char **why);
/* Removes the indicator (its UUID) if the index holds version modified_us of it (INT64_MIN:
 * whatever version): 1 removed, 0 not held. A version added after it is taken again. */
int detect_remove(struct detect_index *x, const uint8_t uuid[16], int64_t modified_us);
/* Removes every live indicator from source (a file's base name: detect_load_file), before the
 * file is loaded again. The number removed. */
size_t detect_remove_source(struct detect_index *x, const char *source);
/* Loads a file of indicators: a STIX bundle or a JSON array or one object per line
 * (indicators), or a Zeek intel file. 0 with counts in the stats; -1 with why. */
int detect_load_file(struct detect_index *x, const char *path, const char *label, char *why, size_t why_len);
/* The same from text in memory: text[len] must be a NUL and text writable (a Zeek intel
 * file is split in place); source names it in ids and messages. */
int detect_load_text(struct detect_index *x, char *text, size_t len, const char *label, const char *source,
		     char *why, size_t why_len);
/* A MISP warning list (list.json: type string, hostname or cidr): indicators whose value it
 * lists are not matched (counted as suppressed, each listed with the list's name). Load
 * before the indicators. */
int detect_load_warninglist(struct detect_index *x, const char *path, char *why, size_t why_len);
int detect_load_warninglist_text(struct detect_index *x, const char *text, size_t len, const char *path, char *why,
				 size_t why_len);

void detect_index_stats(const struct detect_index *x, struct detect_stats *st);
/* Gives back the slack of the index's arrays (after a load; adding again grows them). */
void detect_index_compact(struct detect_index *x);
/* The unsupported and suppressed indicators: each with its reason, and the label, source
 * and author it came with (a listing decides per reader who may see it). */
typedef void (*detect_list_fn)(void *ctx, const char *id, const char *why, const char *label, const char *source,
			       const char *author);
void detect_index_list_skipped(const struct detect_index *x, detect_list_fn fn, void *ctx);

/* ---------- matching ---------- */

/* One match: indicator i matched observable o of an event at time ts_us. */
struct detect_match {
	const struct detect_indicator_info *ind;
	const struct detect_obs *obs;
	int64_t ts_us;
};
typedef void (*detect_match_fn)(void *ctx, const struct detect_match *m);

/* The observables of one event, matched: every indicator whose pattern the event satisfies
 * (a conjunction needs all its comparisons in this event) and that is valid at ts_us. The
 * number of matches. */
size_t detect_match_event(const struct detect_index *x, const struct detect_obs *obs, size_t n, int64_t ts_us,
			  detect_match_fn fn, void *ctx);

/* ---------- events ---------- */

enum detect_format { DETECT_AUTO = 0, DETECT_ZEEK_TSV, DETECT_ZEEK_JSON, DETECT_EVE, DETECT_SYSLOG };

/* One log's reader: lines in, each event's observables out. Zeek TSV follows its #fields
 * header (and #separator); JSON lines are Zeek's or Suricata EVE (event_type); other lines
 * are syslog (RFC 5424 or 3164), whose message is searched for addresses and names. */
struct detect_reader;
typedef void (*detect_event_fn)(void *ctx, const struct detect_obs *obs, size_t n, int64_t ts_us, const char *line,
				size_t line_len);
struct detect_reader *detect_reader_new(enum detect_format f, detect_event_fn fn, void *ctx);
void detect_reader_free(struct detect_reader *r);
/* One line (without its newline). 0; -1 when it did not parse (counted). */
int detect_reader_line(struct detect_reader *r, const char *line, size_t n);
/* The Zeek TSV header the reader holds (#separator, #set_separator, #fields), as lines that
 * give another reader the same state through detect_reader_line, appended to out; nothing
 * when it holds none, or when a field name holds the separator now in use (a #separator line
 * came after the #fields line). 0, or KZ_ENOMEM. */
int detect_reader_header(const struct detect_reader *r, struct kz_buf *out);
struct detect_reader_stats {
	uint64_t lines, events, errors;
	const char *last_error;
};
void detect_reader_stats(const struct detect_reader *r, struct detect_reader_stats *st);

/* ---------- following a file ---------- */

/* Where matching of the record log resumes after a restart, saved as data_dir/detect.pos:
 * exactly "next_seq N\n", N a log sequence number from 1 to 2^64-1 in decimal (no sign, no
 * leading zero, no white space elsewhere). detect_pos_parse: 0 and *seq, or -1 for anything
 * else. detect_pos_format: the text (NUL-terminated in out[DETECT_POS_MAX]), its length. */
#define DETECT_POS_MAX 32
int detect_pos_parse(const char *text, size_t n, uint64_t *seq);
size_t detect_pos_format(uint64_t seq, char out[DETECT_POS_MAX]);
/* The Zeek headers the topics' readers hold at position seq, saved beside it as
 * data_dir/detect.headers: {"next_seq":N,"topics":[{"topic":T,"header":LINES},...]}. A header is
 * published once, ahead of a sensor's lines; without it a restart would read a topic's later
 * lines without their fields until the sensor sends one again. Written with _begin, an _add
 * per topic (nothing for a reader without a header; scratch is a buffer of the caller's) and
 * _end (0, or KZ_ENOMEM). The node writes the file only when the headers changed, before
 * detect.pos, so headers saved at N hold at every position saved from N on. Read with _parse:
 * fn for each topic (the header's lines go to a reader with detect_reader_line) when the file
 * is well-formed and saved at seq or before, and their count; -1 and no fn call otherwise. */
struct detect_reader;
typedef void (*detect_header_fn)(void *ctx, const char *topic, size_t topic_len, const char *header, size_t len);
int detect_headers_begin(struct kz_buf *b, uint64_t seq);
int detect_headers_add(struct kz_buf *b, const char *topic, const struct detect_reader *r, struct kz_buf *scratch);
int detect_headers_end(struct kz_buf *b);
/* Two files of _begin/_add/_end that hold the same topics and headers, at any positions. */
bool detect_headers_same(const struct kz_buf *a, const struct kz_buf *b);
long detect_headers_parse(const char *text, size_t n, uint64_t seq, detect_header_fn fn, void *ctx);

/* A log file followed as it grows, across rotation (renamed or truncated; detect_tail.c). */
struct detect_tail;
typedef void (*detect_line_fn)(void *ctx, const char *line, size_t n);
/* from_start: read what the file holds already (else only what is appended). NULL when out
 * of memory; a file that does not exist yet is waited for. */
struct detect_tail *detect_tail_open(const char *path, bool from_start);
void detect_tail_close(struct detect_tail *t);
/* The complete lines appended since the last poll (a rotated file's rest first). The
 * number of lines. */
int detect_tail_poll(struct detect_tail *t, detect_line_fn fn, void *ctx);
uint64_t detect_tail_rotations(const struct detect_tail *t);

/* ---------- sightings ---------- */

/* A name-based UUID (RFC 9562 version 5, SHA-1) in STIX's namespace for cyber-observables
 * (00abedb4-aa42-55c7-8c2b-2b0e3f5e6a4c, STIX 2.1 §2.9), written after prefix into out
 * (prefix + 36 + 1 bytes): the id STIX gives an SCO whose contributing properties, as
 * canonical JSON, are name. */
void detect_uuid5(const char *name, size_t n, const char *prefix, char *out);

/* Repeated matches of one indicator on one value are one sighting: count, first and last
 * seen. */
struct detect_sightings;
struct detect_sightings *detect_sightings_new(const char *sensor_identity);
/* Sightings kept for aggregation beyond this are forgotten after a flush (0: no cap). */
void detect_sightings_cap(struct detect_sightings *s, size_t max);
/* versioned: created and modified are the times of the first and of this flush (each flush
 * a strictly newer version), as a service that stores them wants; else first and last seen
 * (deterministic output for detect scan). */
void detect_sightings_versioned(struct detect_sightings *s, bool versioned);
void detect_sightings_free(struct detect_sightings *s);
/* label: the sighting's (different labels make different sightings). */
void detect_sightings_add(struct detect_sightings *s, const struct detect_match *m, const char *label);
size_t detect_sightings_count(const struct detect_sightings *s);
/* Each sighting as one line: a STIX 2.1 bundle of the sighting, its observed-data and the
 * observed object (ids deterministic: the same sighting gets the same ids). The number. */
struct detect_sighting_out {
	const char *json;   /* the bundle */
	size_t len;
	const char *label, *author; /* its label; the indicator's author ("" unknown) */
	bool first;         /* its first flush (later ones are new versions of the same objects) */
};
typedef void (*detect_sighting_fn)(void *ctx, const struct detect_sighting_out *o);
size_t detect_sightings_flush(struct detect_sightings *s, detect_sighting_fn fn, void *ctx);

#endif
