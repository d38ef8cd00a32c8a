/* fuzz_topic.c — topic names, filters, $share parsing and matching; the trie must agree
 * with the reference matcher. Input: filter NUL topic. */
#include "mqtt/mqtt_topic.h"
#include "mqtt/mqtt_trie.h"

#include <assert.h>
#include <string.h>

static void visit(struct mqtt_trie_node *nd, void *ctx) { (*(int *)ctx)++; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	if (!nul)
		return 0;
	const uint8_t *f = data, *t = nul + 1;
	size_t fl = (size_t)(nul - data), tl = size - fl - 1;
	const char *why;
	struct mqtt_topic_limits lim = { 4096, 64 };
	const uint8_t *g, *ff;
	size_t gl, ffl;
	(void)mqtt_topic_share_split(f, fl, &g, &gl, &ff, &ffl, &why);
	if (mqtt_topic_filter_check(f, fl, &lim, &why) || mqtt_topic_name_check(t, tl, &lim, &why))
		return 0;
	int ref = kz_topic_match(f, fl, t, tl);
	struct mqtt_trie tr;
	mqtt_trie_init(&tr, 0);
	struct mqtt_trie_node *nd = mqtt_trie_get(&tr, f, fl, 1);
	nd->value = &tr;
	int hits = 0;
	mqtt_trie_match_topic(&tr, t, tl, visit, &hits);
	assert(hits == ref);
	struct mqtt_trie rt;
	mqtt_trie_init(&rt, 0);
	mqtt_trie_get(&rt, t, tl, 1)->value = &rt;
	hits = 0;
	mqtt_trie_match_filter(&rt, f, fl, visit, &hits);
	assert(hits == ref);
	nd->value = NULL;
	mqtt_trie_prune(&tr, nd);
	assert(tr.n_nodes == 0);
	mqtt_trie_cleanup(&tr);
	mqtt_trie_cleanup(&rt);
	return 0;
}
