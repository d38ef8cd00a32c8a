/* node_tak.c — the TAK server endpoint (docs/ADAPTERS.md "TAK"): TAK clients (ATAK, WinTAK,
 * iTAK) connect over TLS with a certificate of the node's CA, as to a TAK server's streaming
 * port (tak.listen, usually 8089), and speak Cursor-on-Target: XML, or TAK Protocol version 1
 * (protobuf, takp.c) once negotiated.
 *
 *   in:  each event, parsed (cot.c); a position report (type a-*) becomes an entity update
 *        on kz/entity/cot:<uid>, written as the client's own identity under the policy (may
 *        it publish there, with what label); other events (chat, markers, shapes) become
 *        records on kz/tak/cot/<uid> and are relayed to the clients that may see them.
 *   out: every entity the client may see (the decision point per entity and per field, as
 *        for the API), as a CoT event: the whole picture when it connects, then each entity
 *        that changed, at most once per tak.push_interval_ms (changes in between are
 *        coalesced: the client gets the newest state). Its own report is not echoed.
 *
 * A connection's life:
 *   handshake --no identity, or the policy refuses it--> closed
 *   handshake --ok--> OPEN (XML; the offer t-x-takp-v sent when tak.protocol = 1)
 *   OPEN --t-x-takp-q for version 1--> response true, OPEN in TAK Protocol version 1
 *   OPEN: reads events; every tick, when push_interval_ms has passed and
 *                     its output is below tak.max_output_bytes, writes the changes
 *   OPEN --client gone, node stopping--> closed */
#include "node/node_tak.h"
#include "adapters/cot.h"
#include "adapters/takp.h"
#include "base/kz_buf.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "mqtt/mqtt_broker.h"
#include "node/node_adapters.h"
#include "node/node_config.h"
#include "services/entity/entity_service.h"
#include "services/entity/entity_view.h"
#include "trust/audit.h"
#include "trust/ca.h"
#include "trust/policy.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tak_conn {
	struct net_conn *c;
	struct node_tak *t;
	unsigned worker;
	char identity[512];
	char serial[41];
	int64_t not_after;         /* the certificate's, Unix seconds (0: unknown) */
	struct cot_reader *rd;
	struct takp_reader *pr;    /* once switched to TAK Protocol version 1 */
	int proto;                 /* 0: XML; TAKP_VERSION once negotiated */
	bool offered;              /* the offer (t-x-takp-v) went out */
	char takp_uid[96];         /* the negotiation's uid */
	uint64_t cursor, last_push_ms, relay_cursor;
	size_t last_out;           /* bytes the last push wrote: reserved before the next */
	char own_id[160];          /* the entity of its own reports: not sent back to it */
	struct kz_buf scratch;
	bool listed;               /* open, in its worker's list */
	struct tak_conn *prev, *next;
};

#define RC_UNRENDERED UINT32_MAX
#define RC_MAX_BYTES (16u << 20)

struct rslot {
	uint64_t change;   /* the entity service's event number; 0: empty */
	uint32_t off[2], len[2]; /* per protocol (XML, TAK Protocol) in out[]; len RC_UNRENDERED: not yet */
};

struct rcache {
	uint64_t round_ms, now_ns; /* the tick it is for; the events' time */
	struct kz_buf out[2];
	struct rslot *slots;       /* open addressing, cap a power of two */
	uint32_t cap, n;
};

struct node_tak {
	struct mqtt_broker *b;
	SSL_CTX *ctx;
	struct entity_service *es;
	char node_id[64];
	uint32_t max_conns, max_event_bytes, push_ms, max_out, cert_check_ms, protocol;
	uint64_t *cert_checked_ms;  /* per worker: the last sweep for revoked and expired certificates */
	int fd;
	char host[300];
	struct tak_conn **heads;   /* per worker */
	struct rcache *rc;         /* per worker */
	unsigned n_workers;
	_Atomic unsigned n_open;
	_Atomic uint64_t events_in, reports_in, refused, pushed, connections, relayed, relay_missed, switched, deferred;
	/* other CoT (chat, markers, shapes) for the other clients: a ring of the last
	 * RELAY_CAP, each with its topic, label and sender */
	pthread_mutex_t relay_lock;
	struct relay {
		uint64_t seq;
		char *xml;
		size_t len;
		struct kz_buf pb; /* the same event as a framed TakMessage */
		char topic[160], label[KZ_LABEL_MAX_LEN + 1], origin[512];
	} relay[256];
	uint64_t relay_next; /* the number the next relayed event gets (from 1) */
};
#define RELAY_CAP 256

static const struct net_conn_cbs tak_cbs;
static void on_event(void *ctx, const struct cot_event *e);

/* ---------- in ---------- */

static void on_error(void *ctx, const char *why)
{
	struct tak_conn *tc = ctx;
	atomic_fetch_add(&tc->t->refused, 1);
	kz_debug("%s: TAK: event refused: %s", tc->c ? tc->c->addr : "?", why);
}

/* CoT's own marking as a label (docs/ADAPTERS.md "Labels of CoT"): access is the
 * classification (a level of the policy, case and spaces folded: "Secret" -> secret), caveat
 * and releaseableTo go to the policy's categories named caveat and rel when it has them.
 * 0 with out "" when the event has no access (the policy's default then); -1 with why. */
static int cot_label(const struct kz_policy *pol, const struct cot_event *e, char *out, size_t cap, const char **why)
{
	out[0] = 0;
	if (!pol || !e->access[0])
		return 0;
	size_t n = 0;
	n += (size_t)snprintf(out + n, cap - n, "class=");
	for (const char *q = e->access; *q && n + 2 < cap; q++)
		out[n++] = *q == ' ' || *q == '_' ? '-' : (char)tolower((unsigned char)*q);
	out[n] = 0;
	bool has_caveat = false, has_rel = false;
	for (uint32_t i = 0; i < pol->n_cats; i++) {
		has_caveat |= !strcmp(pol->cats[i].name, "caveat");
		has_rel |= !strcmp(pol->cats[i].name, "rel");
	}
	if (e->caveat[0] && has_caveat) {
		n += (size_t)snprintf(out + n, cap - n, ";caveat=");
		for (const char *q = e->caveat; *q && n + 2 < cap; q++)
			out[n++] = *q == ' ' ? ',' : (char)tolower((unsigned char)*q);
		out[n] = 0;
	}
	if (e->releasable[0] && has_rel) { /* "USA GBR" or "USA,GBR" */
		n += (size_t)snprintf(out + n, cap - n, ";rel=");
		bool sep = false;
		for (const char *q = e->releasable; *q && n + 2 < cap; q++) {
			if (*q == ' ' || *q == ',') {
				sep = n > 0 && out[n - 1] != '=';
				continue;
			}
			if (sep)
				out[n++] = ',';
			sep = false;
			out[n++] = (char)tolower((unsigned char)*q);
		}
		out[n] = 0;
	}
	struct kz_label l;
	char canon[KZ_LABEL_MAX_LEN + 1], lw[160];
	size_t cn;
	if (kz_label_parse(pol, out, strlen(out), &l, canon, &cn, lw, sizeof lw)) {
		*why = "CoT access, caveat or releaseableTo is not a label of the policy";
		return -1;
	}
	return 0;
}

static void relay_push(struct node_tak *t, const char *topic, const char *label, const char *origin,
		       const struct cot_event *e)
{
	char *copy = malloc(e->xml_len);
	struct kz_buf pb;
	kz_buf_init(&pb, 0);
	if (!copy || takp_write_event(e, &pb)) {
		free(copy);
		kz_buf_cleanup(&pb);
		return;
	}
	memcpy(copy, e->xml, e->xml_len);
	pthread_mutex_lock(&t->relay_lock);
	struct relay *r = &t->relay[t->relay_next % RELAY_CAP];
	free(r->xml);
	kz_buf_cleanup(&r->pb);
	r->seq = t->relay_next++;
	r->xml = copy;
	r->len = e->xml_len;
	r->pb = pb;
	snprintf(r->topic, sizeof r->topic, "%s", topic);
	snprintf(r->label, sizeof r->label, "%s", label);
	snprintf(r->origin, sizeof r->origin, "%s", origin);
	pthread_mutex_unlock(&t->relay_lock);
}

/* An event to the client in its protocol: XML, or a framed TakMessage once switched. */
static int write_out(struct tak_conn *tc, const struct cot_out *o)
{
	return tc->proto ? takp_write(o, &tc->c->out) : cot_write(o, &tc->c->out);
}

/* TAK control events (t-x-*): a ping gets its pong; a protocol request after the offer gets
 * its response and, when it asked for version 1, switches the connection (TAK's "Streaming
 * Connection Protocol Negotiation", steps 5-7): the response is the last XML the node sends,
 * and what the client sends after it is read as TAK Protocol. A request without an offer, or
 * on a connection already switched, is ignored (a client "SHALL NOT send" it). */
static void control(struct tak_conn *tc, const struct cot_event *e)
{
	struct node_tak *t = tc->t;
	uint64_t now = kz_now_wall_ns();
	if (!strcmp(e->type, "t-x-c-t")) {
		struct cot_out o = { .uid = "takPong", .type = "t-x-c-t-r", .time_ns = now, .stale_ns = now + 20000000000ull,
				     .has_point = true, .hae = NAN, .ce = NAN, .le = NAN };
		if (write_out(tc, &o) == 0)
			net_conn_want_flush(tc->c);
		return;
	}
	if (strcmp(e->type, "t-x-takp-q") || !tc->offered || tc->proto)
		return;
	bool ok = e->tak_request == TAKP_VERSION;
	if (ok && !(tc->pr = takp_reader_new(t->max_event_bytes, on_event, on_error, tc)))
		ok = false;
	if (takp_response(&tc->c->out, tc->takp_uid, ok, now))
		return;
	net_conn_want_flush(tc->c);
	if (!ok) {
		kz_info("%s: TAK client %s asked for TAK Protocol version %d: refused (version 1 is offered); it stays on XML",
			tc->c->addr, tc->identity, e->tak_request);
		return;
	}
	tc->proto = TAKP_VERSION;
	cot_reader_stop(tc->rd);
	atomic_fetch_add(&t->switched, 1);
	kz_info("%s: TAK client %s switched to TAK Protocol version 1", tc->c->addr, tc->identity);
}

static void on_event(void *ctx, const struct cot_event *e)
{
	struct tak_conn *tc = ctx;
	struct node_tak *t = tc->t;
	atomic_fetch_add(&t->events_in, 1);
	if (!strncmp(e->type, "t-x-", 4)) { /* TAK control: not an entity, not relayed */
		control(tc, e);
		return;
	}
	const struct kz_policy *pol = atomic_load(&t->b->policy);
	char label[KZ_LABEL_MAX_LEN + 1], id[160];
	const char *why;
	if (cot_label(pol, e, label, sizeof label, &why)) {
		atomic_fetch_add(&t->refused, 1);
		kz_debug("%s: TAK: event %s refused: %s", tc->c->addr, e->uid, why);
		return;
	}
	kz_buf_reset(&tc->scratch);
	if (cot_to_entity(e, &tc->scratch, id, sizeof id) == 0) { /* a position report */
		if (node_entity_write(t->b, t->node_id, tc->identity, label, id, kz_buf_head(&tc->scratch),
				      tc->scratch.len, &why)) {
			atomic_fetch_add(&t->refused, 1);
			kz_debug("%s: TAK: report of %s refused: %s", tc->c->addr, id, why);
			return;
		}
		atomic_fetch_add(&t->reports_in, 1);
		snprintf(tc->own_id, sizeof tc->own_id, "%s", id);
		return;
	}
	/* other CoT: a record on kz/tak/cot/<uid>, and relayed to the clients that may see it */
	char name[COT_UID_MAX + 16], topic[160], canon[KZ_LABEL_MAX_LEN + 1];
	cot_uid_name(e->uid, name, sizeof name);
	snprintf(topic, sizeof topic, "kz/tak/cot/%s", name);
	if (node_record_write(t->b, t->node_id, tc->identity, label, topic, "application/xml", (const uint8_t *)e->xml,
			      e->xml_len, canon, &why)) {
		atomic_fetch_add(&t->refused, 1);
		kz_debug("%s: TAK: event %s refused: %s", tc->c->addr, e->uid, why);
		return;
	}
	relay_push(t, topic, canon, tc->identity, e);
}

/* ---------- out ---------- */

struct push {
	struct tak_conn *tc;
	struct rcache *rc;
	struct entity_reader rd;
	uint64_t now;
	unsigned n;
};

/* An entity's label as CoT's marking: class -> access (upper case), rel -> releaseableTo
 * ("USA GBR"). */
static void label_marking(const char *label, char *access, size_t acap, char *rel, size_t rcap)
{
	if (!label)
		return;
	for (const char *f = label; *f;) {
		const char *end = strchr(f, ';');
		size_t n = end ? (size_t)(end - f) : strlen(f);
		char *out = !strncmp(f, "class=", 6) ? access : !strncmp(f, "rel=", 4) ? rel : NULL;
		size_t cap = out == access ? acap : rcap, skip = out == access ? 6 : 4, k = 0;
		for (size_t i = skip; out && i < n && k + 1 < cap; i++)
			out[k++] = f[i] == ',' ? ' ' : (char)toupper((unsigned char)f[i]);
		if (out)
			out[k] = 0;
		f += n + (end != NULL);
	}
}

/* The CoT event of entity e, with the fields in hide left out, in protocol proto, appended
 * to b: 0; 1 when there is nothing to send (no position this reader may see); <0 on error. */
static int render(int proto, uint64_t now, enum entity_event ev, const struct entity *e, uint32_t hide,
		  struct kz_buf *b)
{
	bool pos = (e->pos.has & ENTITY_POS_KNOWN) && !(hide & (1u << ENTITY_G_POSITION));
	if (!pos)
		return 1; /* a TAK screen draws points: an entity without one (to this reader) is not sent */
	bool track = e->motion.has && !(hide & (1u << ENTITY_G_MOTION)) && (e->motion.has & ENTITY_HAS_COURSE) &&
		     (e->motion.has & ENTITY_HAS_SPEED);
	const char *uid = !strncmp(e->id, "cot:", 4) ? e->id + 4 : e->id;
	const char *type = e->type && !(hide & (1u << ENTITY_G_TYPE)) ? e->type : "a-u-G";
	const char *name = e->name && !(hide & (1u << ENTITY_G_NAME)) ? e->name : e->id;
	uint64_t stale = ev == ENTITY_EV_REMOVE || e->status == ENTITY_REMOVED ? now : e->stale_ns;
	struct cot_out o = { .uid = uid, .type = type, .callsign = name, .time_ns = now,
			     .stale_ns = stale > now ? stale : now, .has_point = true, .lat = e->pos.lat,
			     .lon = e->pos.lon, .hae = (e->pos.has & ENTITY_HAS_HAE) ? e->pos.hae : NAN,
			     .ce = (e->pos.has & ENTITY_HAS_CE) ? e->pos.ce : NAN,
			     .le = (e->pos.has & ENTITY_HAS_LE) ? e->pos.le : NAN, .has_track = track,
			     .speed = e->motion.speed, .course = e->motion.course };
	char access[64] = "", rel[256] = "";
	label_marking(e->label, access, sizeof access, rel, sizeof rel);
	o.access = access[0] ? access : NULL;
	o.releasable = rel[0] ? rel : NULL;
	return proto ? takp_write(&o, b) : cot_write(&o, b);
}

/* The worker's round cache: within one round (one tick's time), each change is rendered
 * once per protocol, in full, and every client that may see all of its fields gets a copy
 * of those bytes. A client that may not see some field gets its own rendering. */
static struct rslot *rc_slot(struct rcache *rc, uint64_t change)
{
	if ((rc->n + 1) * 2 > rc->cap) {
		uint32_t ncap = rc->cap ? rc->cap * 2 : 1024;
		struct rslot *ns = calloc(ncap, sizeof *ns);
		if (!ns)
			return NULL;
		for (uint32_t i = 0; i < rc->cap; i++)
			if (rc->slots[i].change) {
				uint32_t k = (uint32_t)(rc->slots[i].change * 0x9E3779B97F4A7C15ull >> 32) & (ncap - 1);
				while (ns[k].change)
					k = (k + 1) & (ncap - 1);
				ns[k] = rc->slots[i];
			}
		free(rc->slots);
		rc->slots = ns;
		rc->cap = ncap;
	}
	uint32_t k = (uint32_t)(change * 0x9E3779B97F4A7C15ull >> 32) & (rc->cap - 1);
	while (rc->slots[k].change && rc->slots[k].change != change)
		k = (k + 1) & (rc->cap - 1);
	if (!rc->slots[k].change) {
		if (rc->out[0].len + rc->out[1].len > RC_MAX_BYTES)
			return NULL; /* a huge round (a snapshot of a big picture): the rest is rendered per client */
		rc->slots[k] = (struct rslot){ .change = change, .len = { RC_UNRENDERED, RC_UNRENDERED } };
		rc->n++;
	}
	return &rc->slots[k];
}

static void rc_round(struct rcache *rc, uint64_t now_ms)
{
	if (rc->round_ms == now_ms && rc->now_ns)
		return;
	rc->round_ms = now_ms;
	rc->now_ns = kz_now_wall_ns();
	if (rc->n)
		memset(rc->slots, 0, rc->cap * sizeof *rc->slots);
	rc->n = 0;
	kz_buf_reset(&rc->out[0]);
	kz_buf_reset(&rc->out[1]);
}

static void push_one(void *ctx, enum entity_event ev, const struct entity *e)
{
	struct push *p = ctx;
	struct tak_conn *tc = p->tc;
	if (!strcmp(e->id, tc->own_id) || !entity_reader_sees(&p->rd, e))
		return;
	uint32_t hide = entity_reader_hides(&p->rd, e);
	int pr = tc->proto ? 1 : 0;
	struct rslot *sl = hide ? NULL : rc_slot(p->rc, e->change);
	if (!sl) {
		if (render(tc->proto, p->now, ev, e, hide, &tc->c->out) == 0)
			p->n++;
		return;
	}
	struct kz_buf *cb = &p->rc->out[pr];
	if (sl->len[pr] == RC_UNRENDERED) {
		size_t at = cb->len;
		sl->off[pr] = (uint32_t)at;
		sl->len[pr] = render(tc->proto, p->now, ev, e, 0, cb) == 0 ? (uint32_t)(cb->len - at) : 0;
		cb->len = at + sl->len[pr]; /* a failed rendering leaves nothing */
	}
	if (sl->len[pr] && kz_buf_append(&tc->c->out, kz_buf_head(cb) + sl->off[pr], sl->len[pr]) == 0)
		p->n++;
}

/* The relayed events after the connection's cursor: each one the reader may see (may subscribe
 * to its topic, dominates its label), but its own. */
static void relay_drain(struct tak_conn *tc, struct push *p)
{
	struct node_tak *t = tc->t;
	const struct kz_policy *pol = p->rd.pol;
	pthread_mutex_lock(&t->relay_lock);
	if (t->relay_next - tc->relay_cursor > RELAY_CAP) { /* fell behind the ring */
		atomic_fetch_add(&t->relay_missed, t->relay_next - tc->relay_cursor - RELAY_CAP);
		tc->relay_cursor = t->relay_next - RELAY_CAP;
	}
	for (; tc->relay_cursor < t->relay_next; tc->relay_cursor++) {
		struct relay *r = &t->relay[tc->relay_cursor % RELAY_CAP];
		if (!strcmp(r->origin, tc->identity))
			continue;
		if (pol) {
			const char *w;
			struct kz_label l;
			char canon[KZ_LABEL_MAX_LEN + 1], lw[160];
			size_t cn;
			if (!kz_policy_subscribe(pol, &p->rd.s, r->topic, strlen(r->topic), &w) ||
			    (r->label[0] && (kz_label_parse(pol, r->label, strlen(r->label), &l, canon, &cn, lw, sizeof lw) ||
					     !kz_dominates(pol, &p->rd.s, &l, &w))))
				continue;
		}
		if ((tc->proto ? kz_buf_append(&tc->c->out, kz_buf_head(&r->pb), r->pb.len)
			       : kz_buf_append(&tc->c->out, r->xml, r->len)) == 0) {
			p->n++;
			atomic_fetch_add(&t->relayed, 1);
		}
	}
	pthread_mutex_unlock(&t->relay_lock);
}

static void push(struct tak_conn *tc, uint64_t now_ms)
{
	struct node_tak *t = tc->t;
	if (!t->es)
		return;
	if (net_conn_output_pending(tc->c) + tc->c->out.len > t->max_out) {
		atomic_fetch_add(&t->deferred, 1);
		return; /* a slow client: its cursor waits, the changes coalesce */
	}
	struct rcache *rc = &t->rc[tc->worker];
	rc_round(rc, now_ms);
	struct push p = { .tc = tc, .rc = rc, .now = rc->now_ns };
	entity_reader_init(&p.rd, atomic_load(&t->b->policy), tc->identity);
	/* as much as last time (up to 1 MiB, a snapshot's size is not kept): no growing copy by copy */
	(void)kz_buf_reserve(&tc->c->out, tc->last_out < (1u << 20) ? tc->last_out : (1u << 20));
	size_t before = tc->c->out.len;
	(void)entity_service_changes(t->es, &tc->cursor, 0, push_one, &p);
	relay_drain(tc, &p);
	tc->last_out = tc->c->out.len - before;
	tc->last_push_ms = now_ms;
	if (p.n) {
		atomic_fetch_add(&t->pushed, p.n);
		net_conn_want_flush(tc->c);
	}
}

/* ---------- connections ---------- */

static void on_open(struct net_conn *c)
{
	struct node_tak *t = c->proto;
	struct tak_conn *tc = c->user; /* made at accept, with its worker */
	struct net_peer peer;
	const char *why = net_tls_peer(c->ssl, &peer);
	const struct kz_policy *pol = atomic_load(&t->b->policy);
	const char *pwhy = NULL;
	bool ok = peer.id != NULL;
	if (ok && pol) {
		struct kz_subject s;
		kz_subject_init(pol, peer.id, &s);
		ok = kz_policy_connect(pol, &s, &pwhy);
	}
	kz_audit(&(struct kz_audit_entry){ .subject = peer.id, .serial = peer.serial, .tls_group = net_conn_group(c),
					  .issuer = peer.issuer, .tls = net_tls_suite(c->ssl), .addr = c->addr,
					  .action = "tak", .resource = c->addr, .allow = ok,
					  .reason = ok ? "TAK client connected" : peer.id ? pwhy : why,
					  .policy = pol ? pol->version : NULL });
	unsigned open = atomic_fetch_add(&t->n_open, 1) + 1;
	if (!ok || open > t->max_conns || !(tc->rd = cot_reader_new(t->max_event_bytes, on_event, on_error, tc))) {
		kz_warn("%s: TAK: refused: %s", c->addr,
			!ok ? (peer.id ? pwhy : why) : open > t->max_conns ? "tak.max_connections reached" : "out of memory");
		free(peer.id);
		atomic_fetch_sub(&t->n_open, 1);
		net_conn_close(c);
		return;
	}
	snprintf(tc->identity, sizeof tc->identity, "%s", peer.id);
	snprintf(tc->serial, sizeof tc->serial, "%s", peer.serial);
	tc->not_after = peer.not_after;
	free(peer.id);
	tc->cursor = ENTITY_CURSOR_START;
	pthread_mutex_lock(&t->relay_lock);
	tc->relay_cursor = t->relay_next; /* relays from now on */
	pthread_mutex_unlock(&t->relay_lock);
	tc->next = t->heads[tc->worker];
	if (tc->next)
		tc->next->prev = tc;
	t->heads[tc->worker] = tc;
	tc->listed = true;
	atomic_fetch_add(&t->connections, 1);
	kz_info("%s: TAK client %s connected (TLS 1.3, group %s)", c->addr, tc->identity, net_conn_group(c));
	if (t->protocol >= TAKP_VERSION) { /* the offer first (TAK's negotiation, step 3), then the picture */
		snprintf(tc->takp_uid, sizeof tc->takp_uid, "kizuna-takp-%s-%llu", t->node_id,
			 (unsigned long long)atomic_load(&t->connections));
		tc->offered = takp_offer(&c->out, tc->takp_uid, kz_now_wall_ns()) == 0;
	}
	push(tc, uv_now(c->nl->loop)); /* the picture, at once */
}

static void on_data(struct net_conn *c, const uint8_t *p, size_t n)
{
	struct tak_conn *tc = c->user;
	if (!tc || !tc->listed)
		return;
	if (!tc->proto) {
		cot_reader_feed(tc->rd, (const char *)p, n);
		if (!tc->proto)
			return;
		size_t rn; /* switched by an event of these bytes: the rest is TAK Protocol */
		p = (const uint8_t *)cot_reader_rest(tc->rd, &rn);
		n = rn;
	}
	const char *why;
	if (n && takp_reader_feed(tc->pr, p, n, &why)) {
		atomic_fetch_add(&tc->t->refused, 1);
		kz_warn("%s: TAK client %s: %s; closing", c->addr, tc->identity, why);
		net_conn_close(c);
	}
}

static void on_close(struct net_conn *c)
{
	struct tak_conn *tc = c->user;
	c->user = NULL;
	if (!tc)
		return;
	struct node_tak *t = tc->t;
	if (tc->listed) {
		if (tc->prev)
			tc->prev->next = tc->next;
		else
			t->heads[tc->worker] = tc->next;
		if (tc->next)
			tc->next->prev = tc->prev;
		atomic_fetch_sub(&t->n_open, 1);
	}
	cot_reader_free(tc->rd);
	takp_reader_free(tc->pr);
	kz_buf_cleanup(&tc->scratch);
	free(tc);
}

static const struct net_conn_cbs tak_cbs = { on_open, on_data, NULL, on_close };

/* ---------- the protocol on the workers ---------- */

static void accept_cb(void *ctx, unsigned idx, struct net_loop *nl, int fd)
{
	struct node_tak *t = ctx;
	struct tak_conn *tc = calloc(1, sizeof *tc);
	if (!tc) {
		close(fd);
		return;
	}
	tc->t = t;
	tc->worker = idx;
	kz_buf_init(&tc->scratch, 0);
	struct net_conn *c = net_conn_accept_fd(nl, fd, t->ctx, &tak_cbs, tc);
	if (!c) {
		kz_buf_cleanup(&tc->scratch);
		free(tc);
		return;
	}
	tc->c = c;
	c->proto = t;
}

/* As for MQTT clients: a connection whose certificate expired or was revoked since its
 * handshake is closed, checked every tls.cert_check_ms; each closure is audited. */
static void cert_sweep(struct node_tak *t, unsigned idx, uint64_t now_ms)
{
	if (now_ms - t->cert_checked_ms[idx] < t->cert_check_ms)
		return;
	t->cert_checked_ms[idx] = now_ms;
	const struct kz_revoked *r = atomic_load(&t->b->revoked);
	int64_t now = (int64_t)(kz_now_wall_ns() / 1000000000u);
	for (struct tak_conn *tc = t->heads[idx], *nx; tc; tc = nx) {
		nx = tc->next;
		const char *why = tc->not_after && now >= tc->not_after ? "certificate expired"
				  : kz_revoked_has(r, tc->serial)		 ? "certificate revoked"
										 : NULL;
		if (!why)
			continue;
		kz_info("%s: TAK client %s (serial %s): %s; closing", tc->c->addr, tc->identity, tc->serial, why);
		kz_audit(&(struct kz_audit_entry){ .subject = tc->identity, .serial = tc->serial, .addr = tc->c->addr,
						  .action = "connection", .resource = tc->c->addr, .allow = false,
						  .reason = why });
		net_conn_close(tc->c);
	}
}

static void tick(void *ctx, unsigned idx, uint64_t now_ms)
{
	struct node_tak *t = ctx;
	cert_sweep(t, idx, now_ms);
	for (struct tak_conn *tc = t->heads[idx]; tc; tc = tc->next)
		if (now_ms - tc->last_push_ms >= t->push_ms)
			push(tc, now_ms);
}

static void stop(void *ctx, unsigned idx)
{
	struct node_tak *t = ctx;
	for (struct tak_conn *tc = t->heads[idx], *nx; tc; tc = nx) {
		nx = tc->next;
		net_conn_close(tc->c);
	}
}

static bool idle(void *ctx, unsigned idx)
{
	struct node_tak *t = ctx;
	return t->heads[idx] == NULL;
}

int node_tak_open(const struct node_config *cfg, struct mqtt_broker *b, SSL_CTX *ctx, struct entity_service *es,
		  struct node_tak **out, char *why, size_t why_len)
{
	*out = NULL;
	if (!cfg->tak_listen[0])
		return 0;
	struct node_tak *t = calloc(1, sizeof *t);
	if (!t || !(t->heads = calloc(cfg->threads ? cfg->threads : 1, sizeof *t->heads)) ||
	    !(t->rc = calloc(cfg->threads ? cfg->threads : 1, sizeof *t->rc)) ||
	    !(t->cert_checked_ms = calloc(cfg->threads ? cfg->threads : 1, sizeof *t->cert_checked_ms))) {
		if (t)
			free(t->heads), free(t->rc);
		free(t);
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	t->n_workers = cfg->threads ? cfg->threads : 1;
	for (unsigned i = 0; i < t->n_workers; i++)
		kz_buf_init(&t->rc[i].out[0], 0), kz_buf_init(&t->rc[i].out[1], 0);
	pthread_mutex_init(&t->relay_lock, NULL);
	t->b = b;
	t->ctx = ctx;
	t->es = es;
	snprintf(t->node_id, sizeof t->node_id, "%s", cfg->node_id);
	t->max_conns = cfg->tak_max_connections;
	t->max_event_bytes = cfg->tak_max_event_bytes;
	t->push_ms = cfg->tak_push_interval_ms;
	t->max_out = cfg->tak_max_output_bytes;
	t->protocol = cfg->tak_protocol;
	t->cert_check_ms = cfg->cert_check_ms ? cfg->cert_check_ms : 10000;
	int port;
	if (node_config_split_addr(cfg->tak_listen, t->host, sizeof t->host, &port)) {
		snprintf(why, why_len, "tak.listen: expected host:port, not '%s'", cfg->tak_listen);
		node_tak_close(t);
		return -1;
	}
	int bound;
	t->fd = net_bind(t->host, port, &bound, why, why_len);
	if (t->fd < 0) {
		node_tak_close(t);
		return -1;
	}
	kz_info("TAK: Cursor-on-Target over TLS 1.3 (client certificate required) on %s:%d", t->host, bound);
	*out = t;
	return 0;
}

void node_tak_proto(struct node_tak *t, struct net_proto *out)
{
	*out = (struct net_proto){ .name = "TAK", .ctx = t, .fd = t->fd, .host = t->host, .accept = accept_cb, .tick = tick, .stop = stop, .idle = idle };
	t->fd = -1; /* the server's now */
}

void node_tak_close(struct node_tak *t)
{
	if (!t)
		return;
	if (t->fd >= 0)
		close(t->fd);
	for (int i = 0; i < RELAY_CAP; i++) {
		free(t->relay[i].xml);
		kz_buf_cleanup(&t->relay[i].pb);
	}
	pthread_mutex_destroy(&t->relay_lock);
	for (unsigned i = 0; t->rc && i < t->n_workers; i++) {
		kz_buf_cleanup(&t->rc[i].out[0]);
		kz_buf_cleanup(&t->rc[i].out[1]);
		free(t->rc[i].slots);
	}
	free(t->rc);
	free(t->cert_checked_ms);
	free(t->heads);
	free(t);
}

void node_tak_metrics(struct node_tak *t, struct kz_buf *b)
{
	if (!t)
		return;
	char m[4096];
	int n = snprintf(m, sizeof m,
			 "# HELP kizuna_tak_connections Open TAK client connections (docs/ADAPTERS.md).\n"
			 "# TYPE kizuna_tak_connections gauge\nkizuna_tak_connections %u\n"
			 "# HELP kizuna_tak_events_total CoT events received, parsed.\n"
			 "# TYPE kizuna_tak_events_total counter\nkizuna_tak_events_total %llu\n"
			 "# HELP kizuna_tak_reports_total Position reports written as entity updates.\n"
			 "# TYPE kizuna_tak_reports_total counter\nkizuna_tak_reports_total %llu\n"
			 "# HELP kizuna_tak_refused_total Events refused (malformed, over a cap, or by the policy).\n"
			 "# TYPE kizuna_tak_refused_total counter\nkizuna_tak_refused_total %llu\n"
			 "# HELP kizuna_tak_pushed_total CoT events sent to TAK clients.\n"
			 "# TYPE kizuna_tak_pushed_total counter\nkizuna_tak_pushed_total %llu\n"
			 "# HELP kizuna_tak_relayed_total Other CoT (chat, markers, shapes) relayed to TAK clients.\n"
			 "# TYPE kizuna_tak_relayed_total counter\nkizuna_tak_relayed_total %llu\n"
			 "# HELP kizuna_tak_relay_missed_total Relayed events a slow client missed (the relay ring moved on).\n"
			 "# TYPE kizuna_tak_relay_missed_total counter\nkizuna_tak_relay_missed_total %llu\n"
			 "# HELP kizuna_tak_protocol_switches_total Connections switched to TAK Protocol version 1.\n"
			 "# TYPE kizuna_tak_protocol_switches_total counter\nkizuna_tak_protocol_switches_total %llu\n"
			 "# HELP kizuna_tak_push_deferred_total Push rounds a client missed because more than tak.max_output_bytes waited for it (its changes coalesce).\n"
			 "# TYPE kizuna_tak_push_deferred_total counter\nkizuna_tak_push_deferred_total %llu\n",
			 atomic_load(&t->n_open), (unsigned long long)atomic_load(&t->events_in),
			 (unsigned long long)atomic_load(&t->reports_in), (unsigned long long)atomic_load(&t->refused),
			 (unsigned long long)atomic_load(&t->pushed), (unsigned long long)atomic_load(&t->relayed),
			 (unsigned long long)atomic_load(&t->relay_missed), (unsigned long long)atomic_load(&t->switched),
			 (unsigned long long)atomic_load(&t->deferred));
	if (n > 0 && (size_t)n < sizeof m)
		(void)kz_buf_append(b, m, (size_t)n);
}
