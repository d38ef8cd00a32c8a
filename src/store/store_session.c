/* store_session.c — a persistent session as the nodes of a cluster share it (docs/CLUSTER.md
 * "Sessions and retained messages"): the encoding of a KZ_SESSIONS entry.
 *
 *   "KZS1" u8 flags (1 ended, 2 will)
 *   u64 epoch, cut_ns, updated_ns, offline_since_ns   u32 expiry_s
 *   str8 owner   str16 client_id   str16 peer_id (empty: none)
 *   [will] u32+bytes topic, payload, props; u8 qos, u8 retain, u32 delay_s, u32 expiry_s, u8 has_expiry
 *   u32 n_subs, each: str16 filter, str16 group (empty: not shared), u8 qos, u8 retain handling,
 *                      u8 flags (1 no local, 2 retain as published), u32 subscription id
 *
 * Integers little-endian; strings are UTF-8 without NUL bytes. Nothing after the last sub. */
#include "store/store.h"

#include "base/kz_err.h"

#include <stdlib.h>
#include <string.h>

#define MAGIC "KZS1"
#define F_ENDED 1
#define F_WILL 2

static int put_n(struct kz_buf *b, uint64_t v, int bytes)
{
	uint8_t t[8];
	for (int i = 0; i < bytes; i++)
		t[i] = (uint8_t)(v >> (8 * i));
	return kz_buf_append(b, t, (size_t)bytes);
}

static int put_str(struct kz_buf *b, const char *s, int lenbytes)
{
	size_t n = s ? strlen(s) : 0;
	if (n >= (1u << (8 * lenbytes)))
		return KZ_EINVAL;
	int rc = put_n(b, n, lenbytes);
	return rc ? rc : kz_buf_append(b, s, n);
}

static int put_bytes(struct kz_buf *b, struct kz_bytes v)
{
	int rc = put_n(b, v.len, 4);
	return rc ? rc : kz_buf_append(b, v.p, v.len);
}

int kz_session_entry_encode(const struct kz_session_entry *e, struct kz_buf *out)
{
	const struct kz_state_session *s = &e->s;
	const struct kz_state_will *w = s->will;
	int rc = kz_buf_append(out, MAGIC, 4);
	rc = rc ? rc : put_n(out, (e->ended ? F_ENDED : 0) | (w ? F_WILL : 0), 1);
	rc = rc ? rc : put_n(out, e->epoch, 8);
	rc = rc ? rc : put_n(out, e->cut_ns, 8);
	rc = rc ? rc : put_n(out, e->updated_ns, 8);
	rc = rc ? rc : put_n(out, s->offline_since_ns, 8);
	rc = rc ? rc : put_n(out, s->expiry_s, 4);
	rc = rc ? rc : put_str(out, e->owner, 1);
	rc = rc ? rc : put_str(out, s->client_id, 2);
	rc = rc ? rc : put_str(out, s->peer_id, 2);
	if (!rc && w) {
		rc = put_bytes(out, w->topic);
		rc = rc ? rc : put_bytes(out, w->payload);
		rc = rc ? rc : put_bytes(out, w->props);
		rc = rc ? rc : put_n(out, w->qos, 1);
		rc = rc ? rc : put_n(out, w->retain, 1);
		rc = rc ? rc : put_n(out, w->delay_s, 4);
		rc = rc ? rc : put_n(out, w->expiry_s, 4);
		rc = rc ? rc : put_n(out, w->has_expiry, 1);
	}
	rc = rc ? rc : put_n(out, s->n_subs, 4);
	for (size_t i = 0; !rc && i < s->n_subs; i++) {
		const struct kz_state_sub *sb = &s->subs[i];
		rc = put_str(out, sb->filter, 2);
		rc = rc ? rc : put_str(out, sb->group, 2);
		rc = rc ? rc : put_n(out, sb->qos, 1);
		rc = rc ? rc : put_n(out, sb->retain_handling, 1);
		rc = rc ? rc : put_n(out, (sb->no_local ? 1 : 0) | (sb->retain_as_published ? 2 : 0), 1);
		rc = rc ? rc : put_n(out, sb->sub_id, 4);
	}
	return rc;
}

struct rd {
	const uint8_t *p;
	size_t n, off;
	char *arena; /* copies of strings and bytes */
	const char *why;
};

static bool get_n(struct rd *r, uint64_t *v, int bytes)
{
	if (r->why || r->n - r->off < (size_t)bytes) {
		r->why = r->why ? r->why : "session entry cut off";
		return false;
	}
	*v = 0;
	for (int i = bytes - 1; i >= 0; i--)
		*v = *v << 8 | r->p[r->off + (size_t)i];
	r->off += (size_t)bytes;
	return true;
}

/* A string of lenbytes' length prefix, copied NUL-terminated; NULL when empty and !required. */
static const char *get_str(struct rd *r, int lenbytes, bool required)
{
	uint64_t n;
	if (!get_n(r, &n, lenbytes))
		return NULL;
	if (n > r->n - r->off) {
		r->why = "session entry string runs past the end";
		return NULL;
	}
	if (n == 0) {
		if (required)
			r->why = "session entry string empty";
		return NULL;
	}
	if (memchr(r->p + r->off, 0, n)) {
		r->why = "session entry string holds a NUL byte";
		return NULL;
	}
	char *s = r->arena;
	memcpy(s, r->p + r->off, n);
	s[n] = 0;
	r->arena += n + 1;
	r->off += n;
	return s;
}

static struct kz_bytes get_bytes(struct rd *r)
{
	uint64_t n;
	if (!get_n(r, &n, 4))
		return (struct kz_bytes){ NULL, 0 };
	if (n > r->n - r->off) {
		r->why = "session entry field runs past the end";
		return (struct kz_bytes){ NULL, 0 };
	}
	uint8_t *d = (uint8_t *)r->arena;
	memcpy(d, r->p + r->off, n);
	r->arena += n;
	r->off += n;
	return (struct kz_bytes){ d, n };
}

int kz_session_entry_decode(const uint8_t *p, size_t n, struct kz_session_entry *e, void **block, const char **why)
{
	*block = NULL;
	memset(e, 0, sizeof *e);
	if (n < 4 || memcmp(p, MAGIC, 4) != 0) {
		*why = "not a session entry (magic)";
		return KZ_EMALFORMED;
	}
	/* every string and byte field is copied once (plus a NUL each); sub records are at
	 * least 10 bytes, so n / 10 bounds their count */
	size_t max_subs = n / 10 + 1;
	size_t size = sizeof(struct kz_state_will) + max_subs * sizeof(struct kz_state_sub) + n + 3 + 2 * max_subs;
	char *blk = malloc(size);
	if (!blk) {
		*why = "out of memory";
		return KZ_ENOMEM;
	}
	struct kz_state_will *w = (struct kz_state_will *)(void *)blk;
	struct kz_state_sub *subs = (struct kz_state_sub *)(void *)(blk + sizeof *w);
	struct rd r = { p, n, 4, blk + sizeof *w + max_subs * sizeof *subs, NULL };
	uint64_t flags = 0, v = 0;
	struct kz_state_session *s = &e->s;
	get_n(&r, &flags, 1);
	if (!r.why && (flags & ~(uint64_t)(F_ENDED | F_WILL)))
		r.why = "session entry flags unknown";
	e->ended = flags & F_ENDED;
	get_n(&r, &e->epoch, 8);
	get_n(&r, &e->cut_ns, 8);
	get_n(&r, &e->updated_ns, 8);
	get_n(&r, &s->offline_since_ns, 8);
	if (get_n(&r, &v, 4))
		s->expiry_s = (uint32_t)v;
	e->owner = get_str(&r, 1, true);
	if (!r.why && strlen(e->owner) > 64)
		r.why = "session entry owner longer than a node id";
	s->client_id = get_str(&r, 2, true);
	s->peer_id = get_str(&r, 2, false);
	if (flags & F_WILL) {
		w->topic = get_bytes(&r);
		w->payload = get_bytes(&r);
		w->props = get_bytes(&r);
		uint64_t q = 0, ret = 0, d = 0, x = 0, hx = 0;
		get_n(&r, &q, 1);
		get_n(&r, &ret, 1);
		get_n(&r, &d, 4);
		get_n(&r, &x, 4);
		get_n(&r, &hx, 1);
		if (!r.why && (q > 2 || ret > 1 || hx > 1 || w->topic.len == 0))
			r.why = "session entry will out of range";
		w->qos = (uint8_t)q;
		w->retain = ret;
		w->delay_s = (uint32_t)d;
		w->expiry_s = (uint32_t)x;
		w->has_expiry = hx;
		s->will = w;
	}
	uint64_t ns = 0;
	get_n(&r, &ns, 4);
	if (!r.why && ns > max_subs)
		r.why = "session entry has more subscriptions than it can hold";
	for (uint64_t i = 0; !r.why && i < ns; i++) {
		struct kz_state_sub *sb = &subs[i];
		uint64_t q = 0, rh = 0, fl = 0, id = 0;
		sb->filter = get_str(&r, 2, true);
		sb->group = get_str(&r, 2, false);
		get_n(&r, &q, 1);
		get_n(&r, &rh, 1);
		get_n(&r, &fl, 1);
		get_n(&r, &id, 4);
		if (!r.why && (q > 2 || rh > 2 || fl > 3))
			r.why = "session entry subscription out of range";
		sb->qos = (uint8_t)q;
		sb->retain_handling = (uint8_t)rh;
		sb->no_local = fl & 1;
		sb->retain_as_published = fl & 2;
		sb->sub_id = (uint32_t)id;
	}
	if (!r.why && r.off != n)
		r.why = "bytes after the session entry";
	if (r.why) {
		free(blk);
		memset(e, 0, sizeof *e);
		*why = r.why;
		return KZ_EMALFORMED;
	}
	s->subs = subs;
	s->n_subs = (size_t)ns;
	*block = blk;
	return KZ_OK;
}
