/* ais.h — AIS (ITU-R M.1371-5) received as NMEA 0183 !AIVDM/!AIVDO sentences (IEC 61162-1):
 * checksums, multi-sentence reassembly with a timeout, the 6-bit payload armour, and the
 * decoding of message types 1, 2, 3 (class A position), 4 (base station), 5 (static and
 * voyage), 18, 19 (class B position), 21 (aid to navigation), 24 (class B static, parts A
 * and B) and 27 (long-range position) into struct ais_msg; and a message as an entity update
 * (docs/ADAPTERS.md).
 *
 * Reassembly of one sequence (key: sequential message id and channel):
 *
 *   (none) --part 1 of N--> COLLECTING --part k+1 of N--> ... --part N--> payload, (none)
 *                               |  a part out of order, another count, the timeout,
 *                               `  or a new part 1 ---------------------------> dropped
 *
 * Not thread safe: one reassembler per input. */
#ifndef KZ_AIS_H
#define KZ_AIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kz_buf;

#define AIS_MAX_PARTS 9          /* sentences of one message (the field is one digit) */
#define AIS_MAX_CHARS 512        /* armoured payload characters of one message */
#define AIS_SLOTS 16             /* sequences being reassembled at once */

/* A complete payload: its 6-bit values, one per byte. */
struct ais_payload {
	uint8_t six[AIS_MAX_CHARS];
	size_t n;                    /* 6-bit values */
	unsigned fill;               /* fill bits of the last sentence (0-5) */
	char channel;                /* 'A', 'B' or 0 */
	bool own;                    /* !AIVDO: the receiver's own vessel */
};

struct ais_slot {
	bool used;
	char seq, channel;
	unsigned count, next;        /* parts expected, the next part wanted */
	uint64_t started_ms;
	struct ais_payload p;
};

struct ais_nmea {
	uint32_t timeout_ms;         /* a sequence not complete within this is dropped */
	struct ais_slot slot[AIS_SLOTS];
	uint64_t sentences, bad_checksum, malformed, dropped_parts;
};

void ais_nmea_init(struct ais_nmea *r, uint32_t timeout_ms);
/* One line (without or with its CR LF, or with a tag block \...\ before it): 1 and *out
 * filled when it completes a message; 0 when it was a part kept for later (or not an AIS
 * sentence: *why NULL); -1 with *why when it is malformed (counted). */
int ais_nmea_line(struct ais_nmea *r, const char *line, size_t n, uint64_t now_ms, struct ais_payload *out,
		  const char **why);

/* What a message carried (has: AIS_HAS_*). Units as transmitted, scaled: degrees, knots,
 * degrees from true north, metres, seconds. */
enum {
	AIS_HAS_POS = 1u << 0, AIS_HAS_SPEED = 1u << 1, AIS_HAS_COURSE = 1u << 2, AIS_HAS_HEADING = 1u << 3,
	AIS_HAS_STATUS = 1u << 4, AIS_HAS_NAME = 1u << 5, AIS_HAS_CALLSIGN = 1u << 6, AIS_HAS_SHIPTYPE = 1u << 7,
	AIS_HAS_DIMS = 1u << 8, AIS_HAS_VOYAGE = 1u << 9, AIS_HAS_TURN = 1u << 10, AIS_HAS_TIME = 1u << 11,
	AIS_HAS_AID = 1u << 12, AIS_HAS_VENDOR = 1u << 13,
};

struct ais_msg {
	unsigned type, repeat;
	uint32_t mmsi;
	uint32_t has;
	/* position reports */
	unsigned status;             /* navigation status 0-15 */
	int turn;                    /* rate of turn, raw (-128: not available) */
	double speed;                /* knots; 102.3: not available (types 1-3, 18, 19); 63 (27) */
	bool accuracy, raim;
	double lon, lat;             /* 181 / 91: not available */
	double course;               /* 360 (27: 511): not available */
	unsigned heading;            /* 511: not available */
	unsigned second;             /* UTC second of the report; 60-63: not available */
	unsigned maneuver, radio;
	/* type 18/19 flags, 19 and 21 */
	unsigned reserved, regional;
	bool cs, display, dsc, band, msg22, assigned, dte, off_position, virtual_aid, gnss;
	/* type 4 */
	unsigned year, month, day, hour, minute, tsecond, epfd;
	/* static and voyage */
	uint32_t imo;
	unsigned ais_version, shiptype, to_bow, to_stern, to_port, to_starboard;
	unsigned eta_month, eta_day, eta_hour, eta_minute;
	double draught;
	char callsign[8], shipname[36], destination[21], vendorid[8];
	unsigned model, serial, partno;
	unsigned aid_type;
};

/* 0, or -1 with *why (a type not decoded, or a payload too short for its type). */
int ais_decode(const struct ais_payload *p, struct ais_msg *m, const char **why);

/* The message as gpsd's JSON (scaled, its member names), for `kizuna adapter decode` and the
 * tests against gpsd's expected decodes. 0 or KZ_ENOMEM. */
int ais_to_json(const struct ais_msg *m, struct kz_buf *b);

#endif
