/* modes.h — Mode S / ADS-B (1090 MHz extended squitter) from a dump1090-style receiver
 * (docs/ADAPTERS.md "ADS-B"): the three output formats (AVR raw hex, Beast binary, SBS-1
 * BaseStation text), the CRC-24 parity check, the demodulation of raw 2 MHz I/Q samples
 * (dump1090's --ifile format), and the decoding of DF17/18 extended squitters:
 * identification (TC 1-4), surface position (5-8), airborne position (9-18, 20-22) with CPR
 * (global from an even/odd pair, local against a reference), airborne velocity (19).
 *
 * Aircraft state (struct modes_aircraft, one per ICAO address, at most max of them) keeps
 * the last even and odd CPR frames so that a position is decoded globally from a pair no
 * more than 10 s apart, then locally from the last position (ICAO Doc 9871, the
 * "1090 MHz Riddle" worked examples in the unit test).
 *
 * Not thread safe: one decoder state per input. */
#ifndef KZ_MODES_H
#define KZ_MODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kz_buf;

/* CRC-24 (generator 0x1FFF409) over the first bits - 24 bits of msg, XORed with its last 24:
 * 0 for an intact extended squitter. */
uint32_t modes_crc_residual(const uint8_t *msg, unsigned bits);

/* A raw message: 7 or 14 bytes. */
struct modes_frame {
	uint8_t b[14];
	unsigned len;      /* bytes */
	uint64_t t12mhz;   /* receiver timestamp (Beast, AVR '@'), 0: none */
};

/* AVR: "*8D...;" or "@<12 hex timestamp>8D...;" (with or without CR LF). 1 with *f, 0 for a
 * line that is not a frame (empty), -1 with *why. */
int modes_avr_line(const char *line, size_t n, struct modes_frame *f, const char **why);

/* Beast binary: 0x1A, type '1' (Mode A/C, 2 bytes), '2' (Mode S short, 7), '3' (long, 14),
 * then a 6-byte timestamp, a signal byte and the message, 0x1A doubled inside. Feed bytes
 * as they come; each complete Mode S frame is passed to cb. Garbage before a frame is
 * skipped (counted). */
struct modes_beast {
	uint8_t buf[2 + 2 * (6 + 1 + 14)];
	size_t n;
	bool esc;
	uint64_t skipped;
};
typedef void (*modes_frame_fn)(void *ctx, const struct modes_frame *f);
void modes_beast_feed(struct modes_beast *st, const uint8_t *p, size_t n, modes_frame_fn cb, void *ctx);

/* Raw unsigned 8-bit I/Q samples at 2 MHz (dump1090's --ifile): every frame whose preamble
 * is found and whose parity checks (DF 11, 17, 18: residual 0) is passed to cb. */
void modes_iq_demod(const uint8_t *iq, size_t n, modes_frame_fn cb, void *ctx);

/* What one decoded frame says about its aircraft. */
enum {
	MODES_HAS_CALLSIGN = 1u << 0, MODES_HAS_POS = 1u << 1, MODES_HAS_ALT = 1u << 2, MODES_HAS_VEL = 1u << 3,
	MODES_HAS_VRATE = 1u << 4, MODES_HAS_HEADING = 1u << 5, MODES_HAS_GROUND = 1u << 6,
};

struct modes_msg {
	unsigned df, tc, subtype;
	uint32_t icao;
	uint32_t has;
	char callsign[9];
	unsigned category;
	bool odd;                 /* CPR format */
	uint32_t lat_cpr, lon_cpr;
	int altitude_ft;          /* barometric (TC 9-18) or GNSS height (20-22) */
	bool on_ground;
	double speed_kt, track_deg; /* ground speed and track (velocity subtype 1/2, surface movement) */
	double heading_deg, airspeed_kt; /* subtype 3/4 */
	int vrate_fpm;
};

/* Decodes a DF17/18 frame's fields (no CPR resolution). 0, or -1 with *why (another DF, a
 * parity error, a type code not decoded). */
int modes_decode(const struct modes_frame *f, struct modes_msg *m, const char **why);

/* CPR (ICAO Doc 9871 C.2.6): NL, global decoding of an airborne even/odd pair (odd_last:
 * the odd frame is the newer), local decoding against a reference (surface: 90 degree
 * zones). 0 with *lat, *lon; -1 when the pair straddles a latitude zone boundary. */
int modes_nl(double lat);
int modes_cpr_global(uint32_t lat_e, uint32_t lon_e, uint32_t lat_o, uint32_t lon_o, bool odd_last, double *lat,
		     double *lon);
void modes_cpr_local(uint32_t lat_cpr, uint32_t lon_cpr, bool odd, bool surface, double ref_lat, double ref_lon,
		     double *lat, double *lon);

/* SBS-1 BaseStation text ("MSG,3,1,1,4840D6,1,...,,35000,,,52.2572,3.91937,..."): its fields
 * as a decoded message (positions already resolved: has MODES_HAS_POS with lat/lon). 1, 0 for
 * a line that is not an MSG (or says nothing), -1 with *why. */
int modes_sbs_line(const char *line, size_t n, struct modes_msg *m, double *lat, double *lon, const char **why);

/* ---------- aircraft ---------- */

struct modes_aircraft {
	uint32_t icao;            /* 0: free */
	uint32_t cpr_lat[2], cpr_lon[2];
	uint64_t cpr_ms[2];       /* when each CPR frame came (0: none) */
	bool cpr_surface[2];
	double lat, lon;          /* the last position */
	uint64_t pos_ms;          /* when (0: none) */
	char callsign[9];
	int altitude_ft;
	bool has_alt;
};

struct modes_state {
	struct modes_aircraft *slot;
	size_t cap, n, max;
	bool has_ref;
	double ref_lat, ref_lon;  /* the receiver's position: local decoding of the first frame, surface */
	uint64_t restarts;
};

int modes_state_init(struct modes_state *st, uint32_t max_aircraft, bool has_ref, double ref_lat, double ref_lon);
void modes_state_free(struct modes_state *st);

/* Applies m (received at now_ms) to its aircraft and appends its entity update (JSON for
 * kz/entity/icao:<hex>) to b. 0; 1 when the frame carries nothing to report yet (a first
 * CPR frame); KZ_EINVAL for a position that does not resolve. */
int modes_entity_update(struct modes_state *st, const struct modes_msg *m, uint64_t now_ms, const char *sensor,
			struct kz_buf *b, char id[16]);

/* The same for an SBS message, whose position (when has MODES_HAS_POS) the receiver resolved. */
int modes_sbs_update(struct modes_state *st, const struct modes_msg *m, double lat, double lon, uint64_t now_ms,
		     const char *sensor, struct kz_buf *b, char id[16]);

/* The decoded fields as JSON (for `kizuna adapter decode`), with the resolved position when
 * there is one. */
int modes_to_json(const struct modes_msg *m, const double *lat, const double *lon, struct kz_buf *b);

#endif
