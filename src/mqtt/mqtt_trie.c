/* mqtt_trie.c — topic-level trie with per-node open-addressed child tables. */
#include "mqtt/mqtt_trie.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static struct mqtt_trie_node *node_new(const uint8_t *seg, size_t n)
{
	struct mqtt_trie_node *nd = calloc(1, sizeof *nd + n + 1);
	if (!nd)
		return NULL;
	memcpy(nd->seg, seg, n);
	nd->seg_len = (uint32_t)n;
	nd->seg_hash = kz_hash(seg, n);
	return nd;
}

int mqtt_trie_init(struct mqtt_trie *t, size_t max_nodes)
{
	kz_hash_seed();
	t->root = node_new((const uint8_t *)"", 0);
	t->n_nodes = 0;
	t->max_nodes = max_nodes;
	return t->root ? KZ_OK : KZ_ENOMEM;
}

static void node_free_rec(struct mqtt_trie_node *nd)
{
	for (uint32_t i = 0; i < nd->cap_kids; i++)
		if (nd->kids[i])
			node_free_rec(nd->kids[i]);
	free(nd->kids);
	free(nd);
}

void mqtt_trie_cleanup(struct mqtt_trie *t)
{
	if (t->root)
		node_free_rec(t->root);
	t->root = NULL;
}

static uint32_t slot_of(const struct mqtt_trie_node *nd, uint64_t h, const uint8_t *seg,
			size_t n, bool *found)
{
	uint32_t mask = nd->cap_kids - 1;
	uint32_t i = (uint32_t)h & mask;
	for (;;) {
		struct mqtt_trie_node *k = nd->kids[i];
		if (!k) {
			*found = false;
			return i;
		}
		if (k->seg_hash == h && k->seg_len == n && memcmp(k->seg, seg, n) == 0) {
			*found = true;
			return i;
		}
		i = (i + 1) & mask;
	}
}

struct mqtt_trie_node *mqtt_trie_child(const struct mqtt_trie_node *nd, const uint8_t *seg,
				       size_t n)
{
	if (nd->n_kids == 0)
		return NULL;
	bool found;
	uint32_t i = slot_of(nd, kz_hash(seg, n), seg, n, &found);
	return found ? nd->kids[i] : NULL;
}

static int kids_grow(struct mqtt_trie_node *nd)
{
	uint32_t ncap = nd->cap_kids ? nd->cap_kids * 2 : 4;
	struct mqtt_trie_node **nk = calloc(ncap, sizeof *nk);
	if (!nk)
		return KZ_ENOMEM;
	struct mqtt_trie_node **old = nd->kids;
	uint32_t ocap = nd->cap_kids;
	nd->kids = nk;
	nd->cap_kids = ncap;
	for (uint32_t i = 0; i < ocap; i++) {
		if (!old[i])
			continue;
		bool found;
		uint32_t s = slot_of(nd, old[i]->seg_hash, (const uint8_t *)old[i]->seg,
				     old[i]->seg_len, &found);
		nk[s] = old[i];
	}
	free(old);
	return KZ_OK;
}

static struct mqtt_trie_node *child_add(struct mqtt_trie *t, struct mqtt_trie_node *nd,
					const uint8_t *seg, size_t n)
{
	if (t->max_nodes && t->n_nodes >= t->max_nodes)
		return NULL;
	if ((nd->n_kids + 1) * 4 > nd->cap_kids * 3 && kids_grow(nd))
		return NULL;
	struct mqtt_trie_node *k = node_new(seg, n);
	if (!k)
		return NULL;
	bool found;
	uint32_t s = slot_of(nd, k->seg_hash, seg, n, &found);
	nd->kids[s] = k;
	nd->n_kids++;
	k->parent = nd;
	t->n_nodes++;
	return k;
}

struct mqtt_trie_node *mqtt_trie_get(struct mqtt_trie *t, const uint8_t *p, size_t n, int create)
{
	struct mqtt_trie_node *nd = t->root;
	size_t i = 0;
	for (;;) {
		size_t j = i;
		while (j < n && p[j] != '/')
			j++;
		struct mqtt_trie_node *k = mqtt_trie_child(nd, p + i, j - i);
		if (!k) {
			if (!create)
				return NULL;
			k = child_add(t, nd, p + i, j - i);
			if (!k)
				return NULL;
		}
		nd = k;
		if (j >= n)
			return nd;
		i = j + 1;
	}
}

/* Backward-shift deletion keeps linear probing chains intact. */
static void child_remove(struct mqtt_trie_node *nd, struct mqtt_trie_node *k)
{
	bool found;
	uint32_t mask = nd->cap_kids - 1;
	uint32_t i = slot_of(nd, k->seg_hash, (const uint8_t *)k->seg, k->seg_len, &found);
	if (!found)
		return;
	nd->kids[i] = NULL;
	nd->n_kids--;
	uint32_t j = i;
	for (;;) {
		j = (j + 1) & mask;
		struct mqtt_trie_node *m = nd->kids[j];
		if (!m)
			break;
		uint32_t home = (uint32_t)m->seg_hash & mask;
		bool movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
		if (movable) {
			nd->kids[i] = m;
			nd->kids[j] = NULL;
			i = j;
		}
	}
}

void mqtt_trie_prune(struct mqtt_trie *t, struct mqtt_trie_node *nd)
{
	while (nd && nd != t->root && !nd->value && nd->n_kids == 0) {
		struct mqtt_trie_node *parent = nd->parent;
		child_remove(parent, nd);
		free(nd->kids);
		free(nd);
		t->n_nodes--;
		nd = parent;
	}
}

void mqtt_trie_walk(struct mqtt_trie_node *nd, mqtt_trie_visit visit, void *ctx)
{
	if (nd->value)
		visit(nd, ctx);
	for (uint32_t i = 0; i < nd->cap_kids; i++)
		if (nd->kids[i])
			mqtt_trie_walk(nd->kids[i], visit, ctx);
}

static void match_filter_rec(struct mqtt_trie_node *nd, const uint8_t *f, size_t n,
			     bool at_root, mqtt_trie_visit visit, void *ctx)
{
	size_t j = 0;
	while (j < n && f[j] != '/')
		j++;
	bool last = j >= n;
	if (j == 1 && f[0] == '#') {
		/* '#' matches the parent level too ("a/#" matches "a") */
		if (!at_root && nd->value)
			visit(nd, ctx);
		for (uint32_t i = 0; i < nd->cap_kids; i++) {
			struct mqtt_trie_node *k = nd->kids[i];
			if (k && !(at_root && k->seg_len && k->seg[0] == '$'))
				mqtt_trie_walk(k, visit, ctx);
		}
		return;
	}
	if (j == 1 && f[0] == '+') {
		for (uint32_t i = 0; i < nd->cap_kids; i++) {
			struct mqtt_trie_node *k = nd->kids[i];
			if (!k || (at_root && k->seg_len && k->seg[0] == '$'))
				continue;
			if (last) {
				if (k->value)
					visit(k, ctx);
			} else {
				match_filter_rec(k, f + j + 1, n - j - 1, false, visit, ctx);
			}
		}
		return;
	}
	struct mqtt_trie_node *k = mqtt_trie_child(nd, f, j);
	if (!k)
		return;
	if (last) {
		if (k->value)
			visit(k, ctx);
		return;
	}
	match_filter_rec(k, f + j + 1, n - j - 1, false, visit, ctx);
}

void mqtt_trie_match_filter(struct mqtt_trie *t, const uint8_t *f, size_t n,
			    mqtt_trie_visit visit, void *ctx)
{
	match_filter_rec(t->root, f, n, true, visit, ctx);
}

static void match_topic_rec(struct mqtt_trie_node *nd, const uint8_t *p, size_t n, bool at_root,
			    bool dollar, mqtt_trie_visit visit, void *ctx)
{
	size_t j = 0;
	while (j < n && p[j] != '/')
		j++;
	bool last = j >= n;
	bool wild_ok = !(at_root && dollar);
	if (wild_ok) {
		struct mqtt_trie_node *h = mqtt_trie_child(nd, (const uint8_t *)"#", 1);
		if (h && h->value)
			visit(h, ctx);
		struct mqtt_trie_node *pl = mqtt_trie_child(nd, (const uint8_t *)"+", 1);
		if (pl) {
			if (last) {
				if (pl->value)
					visit(pl, ctx);
				struct mqtt_trie_node *ph = mqtt_trie_child(pl, (const uint8_t *)"#", 1);
				if (ph && ph->value)
					visit(ph, ctx);
			} else {
				match_topic_rec(pl, p + j + 1, n - j - 1, false, dollar, visit, ctx);
			}
		}
	}
	struct mqtt_trie_node *k = mqtt_trie_child(nd, p, j);
	if (!k)
		return;
	if (last) {
		if (k->value)
			visit(k, ctx);
		struct mqtt_trie_node *kh = mqtt_trie_child(k, (const uint8_t *)"#", 1);
		if (kh && kh->value)
			visit(kh, ctx);
		return;
	}
	match_topic_rec(k, p + j + 1, n - j - 1, false, dollar, visit, ctx);
}

void mqtt_trie_match_topic(struct mqtt_trie *t, const uint8_t *p, size_t n,
			   mqtt_trie_visit visit, void *ctx)
{
	match_topic_rec(t->root, p, n, true, n > 0 && p[0] == '$', visit, ctx);
}

size_t mqtt_trie_path(const struct mqtt_trie_node *nd, char *buf, size_t cap)
{
	const struct mqtt_trie_node *chain[256];
	size_t depth = 0;
	for (const struct mqtt_trie_node *x = nd; x && x->parent && depth < 256; x = x->parent)
		chain[depth++] = x;
	size_t len = 0;
	for (size_t d = depth; d-- > 0;) {
		const struct mqtt_trie_node *x = chain[d];
		if (d != depth - 1 && len < cap)
			buf[len++] = '/';
		size_t c = x->seg_len < cap - len ? x->seg_len : cap - len;
		memcpy(buf + len, x->seg, c);
		len += c;
	}
	return len;
}
