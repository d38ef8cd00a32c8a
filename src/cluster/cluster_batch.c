/* cluster_batch.c — several records in one JetStream message (docs/CLUSTER.md "Batches").
 *
 * Why: every message on KZ_RECORDS costs each of the three nats-servers a Raft proposal, a
 * write, a delivery to every node's consumer and its acknowledgement, whatever its size; under
 * load that was most of the cluster's CPU (BENCHMARKS.md). The replicator sends what one scan
 * of the log finds as one message, the follower takes it apart.
 *
 * Wire form: without the header Kz-Count, a message is one record (its body). With Kz-Count: n
 * (2 <= n <= KZ_CLUSTER_BATCH_MAX), the body is n frames: a 4-byte big-endian length, then that
 * many bytes of one record, origin sequences Kz-Origin-Seq .. +n-1 in order. Kz-Local-Seq is
 * the last record's, so that resume_point reads where our records in the stream end from the
 * last message alone. Nats-Msg-Id: the first record's id, and "+n" for a batch; a batch
 * published again with other bounds is stored again and its records dropped as duplicates by
 * their origin sequences on every follower. */
#include "cluster/cluster_internal.h"
#include "base/kz_log.h"
#include "store/store.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

uint64_t kz_cluster_batch_count(const char *v)
{
	if (!v)
		return 1;
	uint64_t n = kz_cluster_parse_seq(v);
	return n <= KZ_CLUSTER_BATCH_MAX ? n : 0;
}

bool kz_cluster_batch_next(const uint8_t *body, size_t n, size_t *off, const uint8_t **rec, size_t *len)
{
	size_t o = *off;
	if (o > n || n - o < 4)
		return false;
	size_t l = (size_t)body[o] << 24 | (size_t)body[o + 1] << 16 | (size_t)body[o + 2] << 8 | body[o + 3];
	if (l == 0 || l > n - o - 4)
		return false;
	*rec = body + o + 4;
	*len = l;
	*off = o + 4 + l;
	return true;
}

bool kz_cluster_batch_valid(const uint8_t *body, size_t n, uint64_t count)
{
	size_t off = 0, len;
	const uint8_t *rec;
	uint64_t k = 0;
	while (k < count && kz_cluster_batch_next(body, n, &off, &rec, &len))
		k++;
	return k == count && off == n;
}

/* ---------- the replicator's side (its thread only) ---------- */

natsStatus kz_cluster_batch_msg(const struct kz_cluster_batch *b, const char *subject, const char *node_id,
				natsMsg **out)
{
	char id[48], lseq[24], oseq[24], cnt[12];
	if (b->n == 1)
		snprintf(id, sizeof id, "%s", b->first_id);
	else
		snprintf(id, sizeof id, "%s+%" PRIu32, b->first_id, b->n);
	snprintf(lseq, sizeof lseq, "%" PRIu64, b->last_local);
	snprintf(oseq, sizeof oseq, "%" PRIu64, b->first_origin);
	snprintf(cnt, sizeof cnt, "%" PRIu32, b->n);
	const uint8_t *body = b->n == 1 ? b->buf + 4 : b->buf;
	size_t len = b->n == 1 ? b->len - 4 : b->len;
	natsMsg *m = NULL;
	natsStatus s = natsMsg_Create(&m, subject, NULL, (const char *)body, (int)len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Kz-Origin-Seq", oseq);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Kz-Local-Seq", lseq);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Kz-Origin", node_id);
	if (s == NATS_OK && b->n > 1)
		s = natsMsgHeader_Set(m, "Kz-Count", cnt);
	if (s != NATS_OK) {
		natsMsg_Destroy(m);
		m = NULL;
	}
	*out = m;
	return s;
}

int kz_cluster_batch_flush(struct kz_cluster *c)
{
	struct kz_cluster_batch *b = &c->batch;
	if (!b->n)
		return 0;
	natsMsg *m = NULL;
	natsStatus s = kz_cluster_batch_msg(b, c->subject, c->cfg.node_id, &m);
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = c->cfg.publish_timeout_ms;
	po.ExpectStream = STREAM;
	if (s == NATS_OK)
		s = js_PublishMsgAsync(c->js, &m, &po); /* takes m on success */
	natsMsg_Destroy(m);
	/* a new batch is remembered (even when the publish failed: it may have gone), after the
	 * last one only; a repeated one is passed by bound_at once the scan is beyond it */
	struct kz_cluster_bound *t = b->count ? &b->bounds[(b->head + b->count - 1) % b->bcap] : NULL;
	if (!b->replay && b->count < b->bcap && (!t || b->first_origin > t->first + t->n - 1)) {
		b->bounds[(b->head + b->count) % b->bcap] = (struct kz_cluster_bound){ b->first_origin, 0, b->n, false };
		b->cursor = ++b->count;
	}
	b->n = 0;
	b->len = 0;
	b->replay = false;
	return s == NATS_OK ? 0 : -1;
}

/* The remembered batch at the cursor, past the ones wholly confirmed (conf) or below origin;
 * NULL: none. */
static struct kz_cluster_bound *bound_at(struct kz_cluster_batch *b, uint64_t origin, uint64_t conf)
{
	while (b->count && b->bounds[b->head].first + b->bounds[b->head].n - 1 <= conf) {
		b->head = (b->head + 1) % b->bcap;
		b->count--;
		if (b->cursor)
			b->cursor--;
	}
	while (b->cursor < b->count) {
		struct kz_cluster_bound *x = &b->bounds[(b->head + b->cursor) % b->bcap];
		if (x->first + x->n - 1 >= origin)
			return x;
		b->cursor++; /* behind the scan: repeated already */
	}
	return NULL;
}

static int bounds_alloc(struct kz_cluster *c)
{
	struct kz_cluster_batch *b = &c->batch;
	if (!b->bounds) { /* at most one batch per record in flight */
		if (!(b->bounds = calloc(c->cfg.window, sizeof *b->bounds)))
			return -1;
		b->bcap = c->cfg.window;
	}
	return 0;
}

/* This node's messages in the stream from stream sequence from (0: the start), headers only
 * (an ordered consumer). */
static natsStatus own_open(struct kz_cluster *c, uint64_t from, natsSubscription **sub, jsErrCode *jerr)
{
	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = STREAM;
	so.Ordered = true;
	so.Config.HeadersOnly = true;
	so.Config.DeliverPolicy = from ? js_DeliverByStartSequence : js_DeliverAll;
	so.Config.OptStartSeq = from;
	*jerr = 0;
	return js_SubscribeSync(sub, c->js, c->subject, NULL, &so, jerr);
}

/* The next of them within wait_ms: its first and last origin sequences (0 when it has none)
 * and how many follow it (*pending untouched when that is not known). */
static natsStatus own_next(natsSubscription *sub, int64_t wait_ms, uint64_t *first, uint64_t *last, uint64_t *pending,
			   uint64_t *sseq)
{
	natsMsg *m = NULL;
	natsStatus s = natsSubscription_NextMsg(&m, sub, wait_ms);
	if (s != NATS_OK)
		return s;
	jsMsgMetaData *md = NULL;
	if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
		*pending = md->NumPending;
		*sseq = md->Sequence.Stream;
		jsMsgMetaData_Destroy(md);
	}
	*first = kz_cluster_header_u64(m, "Kz-Origin-Seq");
	*last = kz_cluster_last_origin(m);
	natsMsg_Destroy(m);
	return NATS_OK;
}

void kz_cluster_batch_learn(struct kz_cluster *c, uint64_t from_sseq, uint64_t conf_origin, uint64_t last_origin)
{
	struct kz_cluster_batch *b = &c->batch;
	if (bounds_alloc(c))
		return;
	natsSubscription *sub = NULL;
	jsErrCode jerr;
	natsStatus s = own_open(c, from_sseq, &sub, &jerr);
	uint64_t pending = 1, read = 0, top = conf_origin, first, last, sseq = 0;
	while (s == NATS_OK && pending && top < last_origin && b->count < b->bcap) {
		if ((s = own_next(sub, c->cfg.publish_timeout_ms, &first, &last, &pending, &sseq)) != NATS_OK)
			break;
		read++;
		if (!first || !last || first <= top) /* not ours; at or below the watermark; stored twice already */
			continue;
		b->bounds[(b->head + b->count++) % b->bcap] = (struct kz_cluster_bound){ first, sseq, (uint32_t)(last - first + 1),
											  true };
		top = last;
	}
	kz_cluster_sub_end(c->nc, sub); /* an ordered consumer: pushed to while it lives */
	b->cursor = 0;
	if (s != NATS_OK || top < last_origin)
		kz_warn("cluster: read back %" PRIu64 " of our messages above record %" PRIu64 " (%s): what is not known of "
			"how records %" PRIu64 "..%" PRIu64 " were batched may be stored twice (the followers drop it)", read,
			conf_origin, s == NATS_OK ? "no room for more" : natsStatus_GetText(s), top + 1, last_origin);
	else
		kz_info("cluster: records %" PRIu64 "..%" PRIu64 " of ours are in the stream (%" PRIu32 " messages read back): "
			"taken as confirmed, not published again", conf_origin + 1, last_origin, b->count);
}

int kz_cluster_batch_put(struct kz_cluster_batch *b, uint64_t seq, const uint8_t *body, size_t n, const uint8_t id[16],
			 uint64_t origin)
{
	if (b->len + 4 + n > b->cap) { /* grows to the largest batch once; kept */
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + 4 + n)
			cap *= 2;
		uint8_t *nb = realloc(b->buf, cap);
		if (!nb)
			return -1;
		b->buf = nb;
		b->cap = cap;
	}
	if (!b->n) {
		kz_uuid_format(id, b->first_id);
		b->first_origin = origin;
	}
	uint8_t *p = b->buf + b->len;
	p[0] = (uint8_t)(n >> 24);
	p[1] = (uint8_t)(n >> 16);
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
	memcpy(p + 4, body, n);
	b->len += 4 + n;
	b->n++;
	b->last_local = seq;
	return 0;
}

int kz_cluster_batch_add(struct kz_cluster *c, uint64_t seq, const uint8_t *body, size_t n, const uint8_t id[16],
			 uint64_t origin, uint64_t conf_origin, uint64_t *stored_sseq)
{
	struct kz_cluster_batch *b = &c->batch;
	uint32_t max_n = c->cfg.batch_records ? c->cfg.batch_records : 1;
	if (bounds_alloc(c))
		return -1;
	struct kz_cluster_bound *x = bound_at(b, origin, conf_origin);
	if (x && x->stored && origin >= x->first) { /* in the stream already: what is open goes first */
		if (b->n && kz_cluster_batch_flush(c))
			return -1;
		*stored_sseq = x->sseq;
		return 1;
	}
	bool starts = x && origin == x->first; /* a remembered batch starts here */
	if (b->n && (starts || (!b->replay && (b->n >= max_n || b->len + 4 + n > c->cfg.batch_bytes))) &&
	    kz_cluster_batch_flush(c))
		return -1;
	if (kz_cluster_batch_put(b, seq, body, n, id, origin))
		return -1;
	if (b->n == 1)
		b->replay = starts;
	if (b->replay && origin == x->first + x->n - 1)
		return kz_cluster_batch_flush(c); /* the remembered batch is whole again */
	return 0;
}

void kz_cluster_batch_drop(struct kz_cluster *c)
{
	c->batch.n = 0;
	c->batch.len = 0;
	c->batch.replay = false;
	c->batch.cursor = 0; /* published again from the watermark: in the same batches */
}

void kz_cluster_batch_free(struct kz_cluster *c)
{
	free(c->batch.buf);
	free(c->batch.bounds);
}

uint64_t kz_cluster_last_origin(natsMsg *m)
{
	const char *v = NULL;
	uint64_t first = kz_cluster_header_u64(m, "Kz-Origin-Seq");
	uint64_t n = kz_cluster_batch_count(natsMsgHeader_Get(m, "Kz-Count", &v) == NATS_OK ? v : NULL);
	return first && n ? first + n - 1 : 0;
}

int kz_cluster_last_of(jsCtx *js, const char *subject, int64_t wait_ms, struct kz_cluster_last *out, natsStatus *st,
		       jsErrCode *jerr)
{
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = wait_ms;
	natsMsg *m = NULL;
	*jerr = 0;
	*out = (struct kz_cluster_last){ 0 };
	*st = js_GetLastMsg(&m, js, STREAM, subject, wait_ms ? &jo : NULL, jerr);
	if (*st == NATS_OK) {
		out->origin = kz_cluster_last_origin(m);
		out->local = kz_cluster_header_u64(m, "Kz-Local-Seq");
		out->sseq = natsMsg_GetSequence(m);
		natsMsg_Destroy(m);
		return KZ_LAST_FOUND;
	}
	if (*jerr == JSStreamNotFoundErr)
		return KZ_LAST_NO_STREAM;
	if (*st == NATS_NOT_FOUND || *jerr == JSNoMessageFoundErr)
		return KZ_LAST_NONE;
	return KZ_LAST_NO_ANSWER;
}

/* ---------- `kizuna cluster status --records` ---------- */

/* Adds [lo, hi] to the sorted, disjoint intervals v (n of them): how many of its sequences
 * were already there. -1: no memory. */
struct span { uint64_t lo, hi; };
static int64_t cover(struct span **v, size_t *n, size_t *cap, uint64_t lo, uint64_t hi)
{
	uint64_t seen = 0;
	size_t k = 0;
	while (k < *n && (*v)[k].hi + 1 < lo)
		k++;
	size_t j = k; /* [k, j): the intervals that touch or overlap [lo, hi], merged into one */
	uint64_t mlo = lo, mhi = hi;
	while (j < *n && (*v)[j].lo <= hi + 1) {
		uint64_t a = (*v)[j].lo > lo ? (*v)[j].lo : lo, b = (*v)[j].hi < hi ? (*v)[j].hi : hi;
		if (a <= b)
			seen += b - a + 1;
		mlo = (*v)[j].lo < mlo ? (*v)[j].lo : mlo;
		mhi = (*v)[j].hi > mhi ? (*v)[j].hi : mhi;
		j++;
	}
	if (j == k) { /* a new interval at k */
		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 16;
			void *nv = realloc(*v, nc * sizeof **v);
			if (!nv)
				return -1;
			*v = nv;
			*cap = nc;
		}
		memmove(*v + k + 1, *v + k, (*n - k) * sizeof **v);
		(*n)++;
	} else {
		memmove(*v + k + 1, *v + j, (*n - j) * sizeof **v);
		*n -= j - k - 1;
	}
	(*v)[k].lo = mlo;
	(*v)[k].hi = mhi;
	return (int64_t)seen;
}

int kz_cluster_print_own_records(struct kz_cluster *c, FILE *out)
{
	natsSubscription *sub = NULL;
	jsErrCode jerr;
	natsStatus s = own_open(c, 0, &sub, &jerr);
	if (s != NATS_OK) {
		fprintf(out, "this node's records stored: unknown (%s, JetStream error %d)\n", natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	struct span *v = NULL;
	size_t nv = 0, cap = 0;
	uint64_t msgs = 0, recs = 0, twice = 0, bad = 0, pending = 1, first, last, sseq, most = 0;
	while (pending) {
		s = own_next(sub, c->cfg.publish_timeout_ms ? c->cfg.publish_timeout_ms : 2000, &first, &last, &pending, &sseq);
		if (s != NATS_OK)
			break; /* nothing more within the time: the end (or an empty subject) */
		msgs++;
		int64_t seen;
		if (!first || !last || (seen = cover(&v, &nv, &cap, first, last)) < 0) {
			bad++;
			continue;
		}
		recs += last - first + 1;
		most = last - first + 1 > most ? last - first + 1 : most;
		twice += (uint64_t)seen;
	}
	uint64_t missing = 0;
	for (size_t k = 0; k < nv; k++) /* below the highest, not stored: before the first interval and between */
		missing += v[k].lo - (k ? v[k - 1].hi + 1 : 1);
	fprintf(out, "this node's records stored: %" PRIu64 " in %" PRIu64 " messages, %" PRIu64
		" more than once, %" PRIu64 " missing, %" PRIu64 " messages not read as records, at most %" PRIu64
		" records in one message%s%s%s\n", recs - twice, msgs, twice, missing, bad, most,
		s != NATS_OK && pending ? " (stopped early: " : "", s != NATS_OK && pending ? natsStatus_GetText(s) : "",
		s != NATS_OK && pending ? ")" : "");
	free(v);
	kz_cluster_sub_end(c->nc, sub);
	return s != NATS_OK && pending ? -1 : 0;
}
