/* mqtt_codec.h — MQTT 3.1.1 and 5.0 packet decoder and encoder.
 *
 * Decoding is zero-copy: every struct mqtt_str in a decoded packet borrows from the input
 * bytes and is valid while they are. Decoding is tri-state: mqtt_frame() says whether a
 * whole packet is present (KZ_OK), more bytes are needed (KZ_EAGAIN), or the bytes are
 * malformed/over the cap; mqtt_decode() then parses one framed packet and, on error, fills
 * struct mqtt_err with the MQTT 5 reason code and a reason string.
 *
 * Encoding writes a complete packet into a kz_buf (appending). Properties are written from
 * struct mqtt_props where their bit is set in `has`, then `extra` verbatim.
 */
#ifndef MQTT_CODEC_H
#define MQTT_CODEC_H

#include "base/kz_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mqtt_version { MQTT_V311 = 4, MQTT_V5 = 5 };

enum mqtt_type {
	MQTT_CONNECT = 1, MQTT_CONNACK, MQTT_PUBLISH, MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL,
	MQTT_PUBCOMP, MQTT_SUBSCRIBE, MQTT_SUBACK, MQTT_UNSUBSCRIBE, MQTT_UNSUBACK,
	MQTT_PINGREQ, MQTT_PINGRESP, MQTT_DISCONNECT, MQTT_AUTH
};

/* MQTT 5.0 §2.4 reason codes (those kizuna uses). */
enum mqtt_rc {
	MQTT_RC_SUCCESS = 0x00, MQTT_RC_GRANTED_QOS1 = 0x01, MQTT_RC_GRANTED_QOS2 = 0x02,
	MQTT_RC_DISCONNECT_WITH_WILL = 0x04, MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
	MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11, MQTT_RC_CONTINUE_AUTH = 0x18,
	MQTT_RC_UNSPECIFIED = 0x80, MQTT_RC_MALFORMED = 0x81, MQTT_RC_PROTOCOL_ERROR = 0x82,
	MQTT_RC_IMPL_SPECIFIC = 0x83, MQTT_RC_UNSUPPORTED_VERSION = 0x84,
	MQTT_RC_CLIENT_ID_INVALID = 0x85, MQTT_RC_BAD_USER_PASS = 0x86,
	MQTT_RC_NOT_AUTHORIZED = 0x87, MQTT_RC_SERVER_UNAVAILABLE = 0x88,
	MQTT_RC_SERVER_BUSY = 0x89, MQTT_RC_BANNED = 0x8A, MQTT_RC_SHUTTING_DOWN = 0x8B,
	MQTT_RC_BAD_AUTH_METHOD = 0x8C, MQTT_RC_KEEPALIVE_TIMEOUT = 0x8D,
	MQTT_RC_SESSION_TAKEN_OVER = 0x8E, MQTT_RC_FILTER_INVALID = 0x8F,
	MQTT_RC_TOPIC_INVALID = 0x90, MQTT_RC_PID_IN_USE = 0x91, MQTT_RC_PID_NOT_FOUND = 0x92,
	MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93, MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
	MQTT_RC_PACKET_TOO_LARGE = 0x95, MQTT_RC_RATE_TOO_HIGH = 0x96,
	MQTT_RC_QUOTA_EXCEEDED = 0x97, MQTT_RC_ADMIN_ACTION = 0x98,
	MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99, MQTT_RC_RETAIN_UNSUPPORTED = 0x9A,
	MQTT_RC_QOS_UNSUPPORTED = 0x9B, MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
	MQTT_RC_SERVER_MOVED = 0x9D, MQTT_RC_SHARED_SUB_UNSUPPORTED = 0x9E,
	MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9F, MQTT_RC_MAX_CONNECT_TIME = 0xA0,
	MQTT_RC_SUB_ID_UNSUPPORTED = 0xA1, MQTT_RC_WILDCARD_SUB_UNSUPPORTED = 0xA2,
};

/* MQTT 3.1.1 §3.2.2.3 CONNACK return codes. */
enum mqtt311_connack {
	MQTT311_ACCEPTED = 0, MQTT311_BAD_VERSION = 1, MQTT311_ID_REJECTED = 2,
	MQTT311_UNAVAILABLE = 3, MQTT311_BAD_USER_PASS = 4, MQTT311_NOT_AUTHORIZED = 5,
};

/* MQTT 5.0 §2.2.2.2 property identifiers. */
enum mqtt_prop_id {
	MQTT_PROP_PAYLOAD_FORMAT = 0x01, MQTT_PROP_MESSAGE_EXPIRY = 0x02,
	MQTT_PROP_CONTENT_TYPE = 0x03, MQTT_PROP_RESPONSE_TOPIC = 0x08,
	MQTT_PROP_CORRELATION_DATA = 0x09, MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
	MQTT_PROP_SESSION_EXPIRY = 0x11, MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
	MQTT_PROP_SERVER_KEEP_ALIVE = 0x13, MQTT_PROP_AUTH_METHOD = 0x15,
	MQTT_PROP_AUTH_DATA = 0x16, MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
	MQTT_PROP_WILL_DELAY = 0x18, MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
	MQTT_PROP_RESPONSE_INFO = 0x1A, MQTT_PROP_SERVER_REFERENCE = 0x1C,
	MQTT_PROP_REASON_STRING = 0x1F, MQTT_PROP_RECEIVE_MAX = 0x21,
	MQTT_PROP_TOPIC_ALIAS_MAX = 0x22, MQTT_PROP_TOPIC_ALIAS = 0x23,
	MQTT_PROP_MAX_QOS = 0x24, MQTT_PROP_RETAIN_AVAILABLE = 0x25,
	MQTT_PROP_USER_PROPERTY = 0x26, MQTT_PROP_MAX_PACKET_SIZE = 0x27,
	MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28, MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
	MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

#define MQTT_HAS(id) (1ull << (id))
#define MQTT_MAX_SUB_IDS 8
#define MQTT_VARINT_MAX 268435455u
/* The wire's ceiling: 1 + 4 + 268,435,455 bytes. */
#define MQTT_MAX_PACKET_WIRE (268435455u + 5u)

struct mqtt_str {
	const uint8_t *p; /* borrows */
	uint32_t len;
};

struct mqtt_props {
	uint64_t has; /* MQTT_HAS(id) for each property present */
	uint8_t payload_format, request_problem_info, request_response_info, max_qos;
	uint8_t retain_available, wildcard_sub_available, sub_id_available, shared_sub_available;
	uint16_t server_keep_alive, receive_max, topic_alias_max, topic_alias;
	uint32_t message_expiry, session_expiry, will_delay, max_packet_size;
	uint32_t sub_ids[MQTT_MAX_SUB_IDS];
	uint8_t n_sub_ids;
	struct mqtt_str content_type, response_topic, correlation_data, assigned_client_id;
	struct mqtt_str auth_method, auth_data, response_info, server_reference, reason_string;
	uint32_t n_user;      /* decode: number of user properties */
	struct mqtt_str raw;  /* decode: the whole property block, for iteration */
	struct mqtt_str extra;/* encode: pre-encoded properties appended verbatim */
};

struct mqtt_connect {
	struct mqtt_str protocol_name;
	uint8_t protocol_level, flags;
	uint16_t keep_alive;
	bool clean_start, has_will, will_retain, has_username, has_password;
	uint8_t will_qos;
	struct mqtt_str client_id, will_topic, will_payload, username, password;
	struct mqtt_props will_props;
};

struct mqtt_packet {
	enum mqtt_type type;
	uint8_t flags;       /* low nibble of the fixed header */
	uint8_t qos;         /* PUBLISH */
	bool dup, retain;    /* PUBLISH */
	bool session_present;/* CONNACK */
	uint8_t reason;      /* CONNACK, PUBACK..PUBCOMP, DISCONNECT, AUTH */
	uint16_t packet_id;
	struct mqtt_str topic;   /* PUBLISH */
	struct mqtt_str payload; /* PUBLISH; SUBSCRIBE/UNSUBSCRIBE/SUBACK/UNSUBACK: the list */
	uint32_t n_entries;      /* SUBSCRIBE/UNSUBSCRIBE/SUBACK/UNSUBACK: entries in payload */
	struct mqtt_props props;
	struct mqtt_connect connect;
};

struct mqtt_err {
	uint8_t reason;  /* MQTT 5 reason code to send */
	const char *why; /* static reason string */
};

/* One topic filter of a SUBSCRIBE with its options (MQTT 5.0 §3.8.3.1). */
struct mqtt_sub_entry {
	struct mqtt_str filter;
	uint8_t qos, retain_handling;
	bool no_local, retain_as_published;
};

/* Frames one packet at p[0..n). On KZ_OK sets *total to the packet's full length.
 * KZ_EAGAIN: incomplete; KZ_EMALFORMED: bad length encoding; KZ_ETOOBIG: over max_packet. */
int mqtt_frame(const uint8_t *p, size_t n, uint32_t max_packet, size_t *total);

/* Decodes one whole framed packet. version is MQTT_V311 or MQTT_V5 (ignored for CONNECT,
 * which carries its own). On error returns KZ_EMALFORMED/KZ_EPROTO and fills *err. */
int mqtt_decode(const uint8_t *p, size_t n, uint8_t version, struct mqtt_packet *pkt,
		struct mqtt_err *err);

/* Iterates a decoded SUBSCRIBE payload: *off starts at 0; returns true with *e filled. */
bool mqtt_sub_next(const struct mqtt_packet *pkt, uint8_t version, size_t *off,
		   struct mqtt_sub_entry *e);
/* Iterates UNSUBSCRIBE topic filters. */
bool mqtt_unsub_next(const struct mqtt_packet *pkt, size_t *off, struct mqtt_str *filter);
/* Iterates the user properties of a decoded property block. */
bool mqtt_user_next(const struct mqtt_props *props, size_t *off, struct mqtt_str *key,
		    struct mqtt_str *val);

/* Iterates an encoded property block p[0..n) (no length prefix): *off starts at 0; true
 * with the property's id and its value (num for integers; a, and b for a User Property's
 * value, for strings and binary data); false at the end or where the block is malformed. */
bool mqtt_prop_next(const uint8_t *p, size_t n, size_t *off, uint8_t *id, uint32_t *num, struct mqtt_str *a,
		    struct mqtt_str *b);

/* Encodes pkt for version into out (appended). KZ_ETOOBIG if over out's cap. */
int mqtt_encode(const struct mqtt_packet *pkt, uint8_t version, struct kz_buf *out);
/* Size mqtt_encode would produce. */
size_t mqtt_encoded_size(const struct mqtt_packet *pkt, uint8_t version);

/* Appends one encoded property (for building struct mqtt_props.extra). */
int mqtt_prop_append_str(struct kz_buf *out, uint8_t id, const uint8_t *p, uint32_t len);
int mqtt_prop_append_pair(struct kz_buf *out, struct mqtt_str key, struct mqtt_str val);
int mqtt_prop_append_byte(struct kz_buf *out, uint8_t id, uint8_t v);

/* Varint helpers (MQTT 5.0 §1.5.5). */
size_t mqtt_varint_size(uint32_t v);
size_t mqtt_varint_put(uint8_t *p, uint32_t v);

const char *mqtt_type_name(enum mqtt_type t);
const char *mqtt_rc_name(uint8_t rc);

static inline struct mqtt_str mqtt_cstr(const char *s)
{
	struct mqtt_str m = { (const uint8_t *)s, 0 };
	while (s && s[m.len])
		m.len++;
	return m;
}

#endif
