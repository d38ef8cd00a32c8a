/* takp.h — TAK Protocol version 1 on a streaming connection (docs/ADAPTERS.md "TAK Protocol
 * version 1"): the framing (0xbf, the payload's length as a varint, the payload), the payload
 * (one TakMessage of takp.proto, decoded and encoded by protobuf-c), and the conversions:
 *
 *   in:  a payload's event becomes CoT XML text, which then goes through cot_parse() — the
 *        same parser, caps and refusals (DTDs, entities, depth) as an event that came as XML,
 *        and the same XML to record and to relay;
 *   out: an entity (struct cot_out) or a received event (struct cot_event, its <detail>
 *        children as xmlDetail) as a framed TakMessage.
 *
 * The negotiation (TAK's "Streaming Connection Protocol Negotiation") happens in XML before
 * the switch: the server offers (t-x-takp-v), the client requests (t-x-takp-q), the server
 * responds (t-x-takp-r); takp_offer() and takp_response() write the server's two events.
 *
 * The reader's states:
 *
 *   MAGIC --0xbf--> LENGTH --varint ended, length <= cap--> PAYLOAD --length bytes--> MAGIC
 *                   LENGTH --length over the cap--> SKIP --length bytes--> MAGIC (refused)
 *   MAGIC --any other byte--> LOST     LENGTH --a varint over 10 bytes--> LOST
 *
 * LOST is final: the stream cannot be framed again, the caller closes the connection. Not
 * thread safe: one reader per connection. */
#ifndef KZ_TAKP_H
#define KZ_TAKP_H

#include "adapters/cot.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kz_buf;

#define TAKP_MAGIC 0xbf
#define TAKP_VERSION 1

struct takp_reader;
/* max_payload: the cap of one payload and of the XML it becomes (tak.max_event_bytes). */
struct takp_reader *takp_reader_new(size_t max_payload, cot_event_fn on_event, cot_error_fn on_error, void *ctx);
void takp_reader_free(struct takp_reader *r);
/* Bytes as they come; each payload's event goes to on_event or on_error (a payload with no
 * event, TakControl only, to neither). 0; -1 once the stream is LOST (why in *why). */
int takp_reader_feed(struct takp_reader *r, const uint8_t *p, size_t n, const char **why);

/* One payload's event as CoT XML text appended to xml: 0; 1 when it carries no event; -1
 * with *why (not a TakMessage, a field out of range). */
int takp_to_xml(const uint8_t *p, size_t n, struct kz_buf *xml, const char **why);

/* Framed TakMessages: an entity as for cot_write() (its releasable has no field in version 1
 * and is left out); an event as received (its <detail> children as xmlDetail). 0 or
 * KZ_ENOMEM / KZ_EINVAL. */
int takp_write(const struct cot_out *o, struct kz_buf *b);
int takp_write_event(const struct cot_event *e, struct kz_buf *b);

/* The server's negotiation events, in XML: the offer of version 1 (t-x-takp-v) and the
 * response to a request (t-x-takp-r, status true or false), under the transaction's uid. */
int takp_offer(struct kz_buf *b, const char *uid, uint64_t now_ns);
int takp_response(struct kz_buf *b, const char *uid, bool ok, uint64_t now_ns);

#endif
