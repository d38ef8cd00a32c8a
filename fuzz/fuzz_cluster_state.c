/* fuzz_cluster_state.c — DIR/cluster.state (kz_cluster_state_parse) and the cluster's sequence
 * headers (kz_cluster_parse_seq), the acknowledgement subject's fields (kz_cluster_ack_parse) and
 * the follower's floor (kz_cluster_floor_take), a batch's body and Kz-Count
 * (kz_cluster_batch_next, _valid, _count), and the spans published out of order
 * (kz_cluster_span_add, _of). A state that parses, written out again in the node's own
 * format, parses to the same values; a sequence that parses prints back to the same digits
 * (leading zeros aside). */
#include "cluster/cluster.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kz_cluster_state st, st2;
	if (kz_cluster_state_parse((const char *)data, size, &st) == 0) {
		static char text[96 + KZ_CLUSTER_MAX_ORIGINS * (100 + KZ_CLUSTER_MAX_GAPS * 120) + KZ_CLUSTER_MAX_SPANS * 90];
		int n = snprintf(text, sizeof text, "confirmed %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", st.confirmed_local,
				 st.confirmed_origin, st.confirmed_sseq);
		for (uint32_t i = 0; i < st.n_origins; i++) {
			n += snprintf(text + n, sizeof text - (size_t)n, "origin %s %" PRIu64 "\n", st.origins[i].id,
				      st.origins[i].seq);
			for (uint32_t g = 0; g < st.origins[i].n_gaps; g++)
				n += snprintf(text + n, sizeof text - (size_t)n, "gap %s %" PRIu64 " %" PRIu64 "\n",
					      st.origins[i].id, st.origins[i].gaps[g].lo, st.origins[i].gaps[g].hi);
		}
		for (uint32_t i = 0; i < st.spans.n; i++)
			n += snprintf(text + n, sizeof text - (size_t)n, "span %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
				      st.spans.v[i].wm_local, st.spans.v[i].wm_origin, st.spans.v[i].wm_sseq, st.spans.v[i].end);
		assert(kz_cluster_state_parse(text, (size_t)n, &st2) == 0);
		assert(st2.spans.n == st.spans.n &&
		       memcmp(st2.spans.v, st.spans.v, st.spans.n * sizeof st.spans.v[0]) == 0);
		assert(st2.confirmed_local == st.confirmed_local && st2.confirmed_origin == st.confirmed_origin &&
		       st2.confirmed_sseq == st.confirmed_sseq);
		assert(st2.n_origins == st.n_origins);
		for (uint32_t i = 0; i < st.n_origins; i++)
			assert(st2.origins[i].seq == st.origins[i].seq && strcmp(st2.origins[i].id, st.origins[i].id) == 0 &&
			       st2.origins[i].n_gaps == st.origins[i].n_gaps &&
			       memcmp(st2.origins[i].gaps, st.origins[i].gaps, st.origins[i].n_gaps * sizeof st.origins[i].gaps[0]) == 0);
	}
	/* the pending count of an acknowledgement subject */
	char *r = malloc(size + 1);
	if (r) {
		memcpy(r, data, size);
		r[size] = 0;
		int64_t pend = kz_cluster_ack_pending(r);
		assert(pend >= -1);
		/* its other fields: only an acknowledgement subject has them */
		struct kz_cluster_ack_info ai;
		if (kz_cluster_ack_parse(r, &ai))
			assert(strncmp(r, "$JS.ACK.", 8) == 0);
		free(r);
	}
	/* the follower's floor fed stream sequences from the input: it only rises, what waits
	 * above it stays sorted, above it and within its room */
	static struct kz_cluster_floor f;
	kz_cluster_floor_reset(&f, 0);
	for (size_t i = 0; i + 2 <= size; i += 2) {
		uint64_t before = f.floor;
		struct kz_cluster_mark m = { .sseq = (uint64_t)data[i] | (uint64_t)data[i + 1] << 8, .oseq = i };
		kz_cluster_floor_take(&f, &m);
		assert(f.floor >= before && f.n_above <= KZ_CLUSTER_FLOOR_ABOVE);
		for (uint32_t k = 0; k < f.n_above; k++)
			assert(f.above[k].sseq > f.floor + 1 && (k == 0 || f.above[k].sseq > f.above[k - 1].sseq));
	}
	/* spans from the input, 4 bytes each (watermark, length): kept by watermark, at most
	 * KZ_CLUSTER_MAX_SPANS, none empty; the span found for a record holds it and no span that
	 * holds it has a lower watermark; a span just added (or one that held it) is found */
	static struct kz_cluster_spans sp;
	sp.n = 0;
	for (size_t i = 0; i + 4 <= size; i += 4) {
		uint64_t wm = (uint64_t)data[i] | (uint64_t)data[i + 1] << 8, end = wm + data[i + 2] % 64;
		kz_cluster_span_add(&sp, wm * 10, wm, data[i + 3], end);
		assert(sp.n <= KZ_CLUSTER_MAX_SPANS);
		for (uint32_t k = 0; k < sp.n; k++)
			assert(sp.v[k].wm_origin < sp.v[k].end && (k == 0 || sp.v[k - 1].wm_origin <= sp.v[k].wm_origin));
		if (end > wm) {
			const struct kz_cluster_span *hit = kz_cluster_span_of(&sp, end);
			assert(hit && hit->wm_origin <= wm && hit->wm_origin < end && end <= hit->end);
			for (uint32_t k = 0; k < sp.n; k++)
				assert(!(sp.v[k].wm_origin < end && end <= sp.v[k].end) || sp.v[k].wm_origin >= hit->wm_origin);
		}
	}
	/* the input as a batch's body: the frames read are inside it, none empty, and it is valid
	 * for exactly their number when they cover it */
	size_t off = 0, len;
	const uint8_t *rec;
	uint64_t frames = 0;
	while (kz_cluster_batch_next(data, size, &off, &rec, &len)) {
		assert(len > 0 && rec >= data + 4 && rec + len <= data + size && off <= size);
		frames++;
	}
	assert(kz_cluster_batch_valid(data, size, frames) == (off == size));
	assert(!kz_cluster_batch_valid(data, size, frames + 1));
	char v[32];
	size_t k = size < sizeof v - 1 ? size : sizeof v - 1;
	memcpy(v, data, k);
	v[k] = 0;
	uint64_t cnt = kz_cluster_batch_count(v);
	assert(cnt <= KZ_CLUSTER_BATCH_MAX && kz_cluster_batch_count(NULL) == 1);
	uint64_t x = kz_cluster_parse_seq(v);
	if (x) {
		char back[32];
		snprintf(back, sizeof back, "%" PRIu64, x);
		const char *p = v;
		while (*p == '0' && p[1])
			p++;
		assert(strcmp(back, p) == 0);
	}
	return 0;
}
