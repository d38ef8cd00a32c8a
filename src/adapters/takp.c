/* takp.c — TAK Protocol version 1: the stream reader, the payload as CoT XML, entities and
 * events as framed TakMessages, and the negotiation's XML events (takp.h). The framing and
 * the negotiation follow TAK's protocol description ("TAK Protocol - Generic Framework -
 * Streaming Connections", "Streaming Connection Protocol Negotiation"); the payload's layout
 * is takp.proto. */
#include "adapters/takp.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_time.h"

#include "takp.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIT(b, s) kz_buf_append((b), (s), sizeof(s) - 1)
#define UNKNOWN 9999999.0 /* CoT's hae, ce, le when not known */

/* ---------- the payload as XML ---------- */

static int attr(struct kz_buf *b, const char *k, const char *v)
{
	return LIT(b, " ") || kz_buf_append(b, k, strlen(k)) || LIT(b, "=\"") || cot_xml_text(b, v) || LIT(b, "\"");
}

/* An optional string attribute: left out when empty (proto3's absent). */
static int attr_opt(struct kz_buf *b, const char *k, const char *v)
{
	return v && *v ? attr(b, k, v) : 0;
}

/* A number as an attribute: %.15g (what strtod reads back; cot_parse checks the range). */
static int attr_num(struct kz_buf *b, const char *k, double v)
{
	char s[40];
	snprintf(s, sizeof s, "%.15g", v);
	return attr(b, k, s);
}

static int attr_ms(struct kz_buf *b, const char *k, uint64_t ms, const char **why)
{
	if (ms > UINT64_MAX / 1000000u) {
		*why = "TAK Protocol: a time beyond the year 2554";
		return -1;
	}
	char t[32];
	kz_time_format(ms * 1000000u, t);
	return attr(b, k, t);
}

/* The typed detail messages, each as the element it stands for. */
static int detail_xml(struct kz_buf *b, const Takp__Detail *d)
{
	int rc = 0;
	if (d->xmldetail && *d->xmldetail) /* XML the sender made: cot_parse checks it like any other */
		rc = kz_buf_append(b, d->xmldetail, strlen(d->xmldetail));
	if (d->contact)
		rc = rc || LIT(b, "<contact") || attr_opt(b, "endpoint", d->contact->endpoint) ||
		     attr(b, "callsign", d->contact->callsign ? d->contact->callsign : "") || LIT(b, "/>");
	if (d->group)
		rc = rc || LIT(b, "<__group") || attr_opt(b, "name", d->group->name) || attr_opt(b, "role", d->group->role) ||
		     LIT(b, "/>");
	if (d->precisionlocation)
		rc = rc || LIT(b, "<precisionlocation") || attr_opt(b, "geopointsrc", d->precisionlocation->geopointsrc) ||
		     attr_opt(b, "altsrc", d->precisionlocation->altsrc) || LIT(b, "/>");
	if (d->status)
		rc = rc || LIT(b, "<status battery=\"") || kz_buf_append_u64(b, d->status->battery) || LIT(b, "\"/>");
	if (d->takv)
		rc = rc || LIT(b, "<takv") || attr_opt(b, "device", d->takv->device) ||
		     attr_opt(b, "platform", d->takv->platform) || attr_opt(b, "os", d->takv->os) ||
		     attr_opt(b, "version", d->takv->version) || LIT(b, "/>");
	if (d->track)
		rc = rc || LIT(b, "<track") || attr_num(b, "speed", d->track->speed) || attr_num(b, "course", d->track->course) ||
		     LIT(b, "/>");
	return rc;
}

int takp_to_xml(const uint8_t *p, size_t n, struct kz_buf *xml, const char **why)
{
	*why = NULL;
	Takp__TakMessage *m = takp__tak_message__unpack(NULL, n, p);
	if (!m) {
		*why = "TAK Protocol: the payload is not a TakMessage";
		return -1;
	}
	const Takp__CotEvent *c = m->cotevent;
	if (!c) {
		takp__tak_message__free_unpacked(m, NULL);
		return 1;
	}
	int rc = 0;
	if (!isfinite(c->lat) || !isfinite(c->lon) || !isfinite(c->hae) || !isfinite(c->ce) || !isfinite(c->le)) {
		*why = "TAK Protocol: a point coordinate is not a finite number";
		rc = -1;
	}
	rc = rc || LIT(xml, "<event version=\"2.0\"") || attr(xml, "uid", c->uid) || attr(xml, "type", c->type) ||
	     attr_opt(xml, "how", c->how) || attr_ms(xml, "time", c->sendtime, why) ||
	     attr_ms(xml, "start", c->starttime, why) || attr_ms(xml, "stale", c->staletime, why) ||
	     attr_opt(xml, "access", c->access) || attr_opt(xml, "qos", c->qos) || attr_opt(xml, "opex", c->opex) ||
	     LIT(xml, "><point") || attr_num(xml, "lat", c->lat) || attr_num(xml, "lon", c->lon) ||
	     attr_num(xml, "hae", c->hae) || attr_num(xml, "ce", c->ce) || attr_num(xml, "le", c->le) || LIT(xml, "/>");
	if (c->detail)
		rc = rc || LIT(xml, "<detail>") || detail_xml(xml, c->detail) || LIT(xml, "</detail>");
	rc = rc || LIT(xml, "</event>");
	takp__tak_message__free_unpacked(m, NULL);
	if (rc && !*why)
		*why = "out of memory";
	return rc ? -1 : 0;
}

/* ---------- framed TakMessages out ---------- */

static int pack(const Takp__TakMessage *m, struct kz_buf *b)
{
	size_t sz = takp__tak_message__get_packed_size(m);
	if (kz_buf_reserve(b, 1 + 10 + sz))
		return KZ_ENOMEM;
	uint8_t *o = kz_buf_tail(b), *q = o;
	*q++ = TAKP_MAGIC;
	for (uint64_t v = sz; ; v >>= 7) {
		*q++ = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		if (v < 0x80)
			break;
	}
	q += takp__tak_message__pack(m, q);
	b->len += (size_t)(q - o);
	return KZ_OK;
}

static double known(double v)
{
	return isnan(v) ? UNKNOWN : v;
}

int takp_write(const struct cot_out *o, struct kz_buf *b)
{
	Takp__TakMessage m = TAKP__TAK_MESSAGE__INIT;
	Takp__CotEvent ev = TAKP__COT_EVENT__INIT;
	Takp__Detail d = TAKP__DETAIL__INIT;
	Takp__Contact contact = TAKP__CONTACT__INIT;
	Takp__Track track = TAKP__TRACK__INIT;
	ev.type = (char *)o->type;
	ev.uid = (char *)o->uid;
	ev.how = "m-g";
	ev.access = o->access ? (char *)o->access : "";
	ev.sendtime = ev.starttime = o->time_ns / 1000000u;
	ev.staletime = o->stale_ns / 1000000u;
	ev.hae = ev.ce = ev.le = UNKNOWN;
	if (o->has_point) {
		ev.lat = o->lat, ev.lon = o->lon;
		ev.hae = known(o->hae), ev.ce = known(o->ce), ev.le = known(o->le);
	}
	if (o->callsign && *o->callsign) {
		contact.callsign = (char *)o->callsign;
		d.contact = &contact;
	}
	if (o->has_track) {
		track.speed = o->speed, track.course = o->course;
		d.track = &track;
	}
	struct kz_buf remarks;
	kz_buf_init(&remarks, 0);
	int rc = 0;
	if (o->remarks && *o->remarks) {
		rc = LIT(&remarks, "<remarks>") || cot_xml_text(&remarks, o->remarks) || LIT(&remarks, "</remarks>") ||
		     kz_buf_append(&remarks, "", 1);
		d.xmldetail = rc ? "" : (char *)kz_buf_head(&remarks);
	}
	ev.detail = &d;
	m.cotevent = &ev;
	rc = rc || pack(&m, b);
	kz_buf_cleanup(&remarks);
	return rc ? KZ_ENOMEM : KZ_OK;
}

int takp_write_event(const struct cot_event *e, struct kz_buf *b)
{
	Takp__TakMessage m = TAKP__TAK_MESSAGE__INIT;
	Takp__CotEvent ev = TAKP__COT_EVENT__INIT;
	Takp__Detail d = TAKP__DETAIL__INIT;
	ev.type = (char *)e->type;
	ev.uid = (char *)e->uid;
	ev.how = (char *)e->how;
	ev.access = (char *)e->access;
	ev.sendtime = e->time_ns / 1000000u;
	ev.starttime = e->start_ns / 1000000u;
	ev.staletime = e->stale_ns / 1000000u;
	ev.hae = ev.ce = ev.le = UNKNOWN;
	if (e->has_point)
		ev.lat = e->lat, ev.lon = e->lon, ev.hae = e->hae, ev.ce = e->ce, ev.le = e->le;
	char *xd = NULL; /* protobuf-c's strings end with a NUL */
	if (e->detail_len && e->detail_off + e->detail_len <= e->xml_len) {
		if (!(xd = strndup(e->xml + e->detail_off, e->detail_len)))
			return KZ_ENOMEM;
		d.xmldetail = xd;
		ev.detail = &d;
	}
	m.cotevent = &ev;
	int rc = pack(&m, b);
	free(xd);
	return rc;
}

/* ---------- the negotiation ---------- */

static int control(struct kz_buf *b, const char *uid, const char *type, uint64_t now_ns, const char *inner)
{
	char t[32], s[32];
	kz_time_format(now_ns, t);
	kz_time_format(now_ns + 60000000000ull, s);
	int rc = LIT(b, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<event version=\"2.0\"") ||
		 attr(b, "uid", uid) || attr(b, "type", type) || attr(b, "time", t) || attr(b, "start", t) ||
		 attr(b, "stale", s) || LIT(b, " how=\"m-g\"><point lat=\"0.0\" lon=\"0.0\" hae=\"0.0\" ce=\"999999\" "
					   "le=\"999999\"/><detail><TakControl>") ||
		 kz_buf_append(b, inner, strlen(inner)) || LIT(b, "</TakControl></detail></event>");
	return rc ? KZ_ENOMEM : KZ_OK;
}

int takp_offer(struct kz_buf *b, const char *uid, uint64_t now_ns)
{
	return control(b, uid, "t-x-takp-v", now_ns, "<TakProtocolSupport version=\"1\"/>");
}

int takp_response(struct kz_buf *b, const char *uid, bool ok, uint64_t now_ns)
{
	return control(b, uid, "t-x-takp-r", now_ns,
		       ok ? "<TakResponse status=\"true\"/>" : "<TakResponse status=\"false\"/>");
}

/* ---------- the stream ---------- */

enum { T_MAGIC, T_LENGTH, T_PAYLOAD, T_SKIP, T_LOST };

struct takp_reader {
	size_t max;
	cot_event_fn on_event;
	cot_error_fn on_error;
	void *ctx;
	int state;
	uint64_t len;       /* LENGTH: the varint so far; PAYLOAD: the payload's length; SKIP: bytes left */
	unsigned shift;
	const char *lost;   /* why the stream is LOST */
	struct kz_buf payload, xml;
};

struct takp_reader *takp_reader_new(size_t max_payload, cot_event_fn on_event, cot_error_fn on_error, void *ctx)
{
	struct takp_reader *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->max = max_payload;
	r->on_event = on_event;
	r->on_error = on_error;
	r->ctx = ctx;
	kz_buf_init(&r->payload, 0);
	kz_buf_init(&r->xml, 0);
	return r;
}

void takp_reader_free(struct takp_reader *r)
{
	if (!r)
		return;
	kz_buf_cleanup(&r->payload);
	kz_buf_cleanup(&r->xml);
	free(r);
}

static void deliver(struct takp_reader *r, const uint8_t *p, size_t n)
{
	const char *why = NULL;
	kz_buf_reset(&r->xml);
	int rc = takp_to_xml(p, n, &r->xml, &why);
	if (rc == 1)
		return; /* TakControl only: nothing to do on a stream whose version is settled */
	if (rc) {
		r->on_error(r->ctx, why);
		return;
	}
	if (r->xml.len > r->max) {
		r->on_error(r->ctx, "TAK Protocol: an event longer, as XML, than the configured cap (tak.max_event_bytes)");
		return;
	}
	struct cot_event e;
	if (cot_parse((const char *)kz_buf_head(&r->xml), r->xml.len, &e, &why))
		r->on_error(r->ctx, why);
	else
		r->on_event(r->ctx, &e);
}

static int lose(struct takp_reader *r, const char *why, const char **out)
{
	r->state = T_LOST;
	r->lost = why;
	*out = why;
	return -1;
}

int takp_reader_feed(struct takp_reader *r, const uint8_t *p, size_t n, const char **why)
{
	size_t i = 0;
	if (r->state == T_LOST)
		return lose(r, r->lost, why);
	while (i < n) {
		switch (r->state) {
		case T_MAGIC:
			if (p[i++] != TAKP_MAGIC)
				return lose(r, "TAK Protocol: a message that does not start with 0xbf", why);
			r->state = T_LENGTH;
			r->len = 0;
			r->shift = 0;
			break;
		case T_LENGTH: {
			uint8_t c = p[i++];
			if (r->shift > 63)
				return lose(r, "TAK Protocol: a length longer than 10 bytes", why);
			r->len |= (uint64_t)(c & 0x7f) << r->shift;
			r->shift += 7;
			if (c & 0x80)
				break;
			if (r->len > r->max) {
				r->on_error(r->ctx, "TAK Protocol: a message longer than the configured cap (tak.max_event_bytes)");
				r->state = T_SKIP;
			} else if (r->len == 0) {
				r->state = T_MAGIC; /* an empty TakMessage: nothing */
			} else {
				kz_buf_reset(&r->payload);
				r->state = T_PAYLOAD;
			}
			break;
		}
		case T_PAYLOAD: {
			size_t want = (size_t)r->len - r->payload.len, take = n - i < want ? n - i : want;
			if (!r->payload.len && take == want) { /* whole in this read: no copy */
				deliver(r, p + i, take);
				r->state = T_MAGIC;
			} else if (kz_buf_append(&r->payload, p + i, take)) {
				return lose(r, "out of memory", why);
			} else if (r->payload.len == r->len) {
				deliver(r, kz_buf_head(&r->payload), r->payload.len);
				r->state = T_MAGIC;
			}
			i += take;
			break;
		}
		case T_SKIP: {
			size_t take = n - i < r->len ? n - i : (size_t)r->len;
			r->len -= take;
			i += take;
			if (!r->len)
				r->state = T_MAGIC;
			break;
		}
		default:
			return lose(r, r->lost, why);
		}
	}
	return 0;
}
