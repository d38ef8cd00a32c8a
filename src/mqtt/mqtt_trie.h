/* mqtt_trie.h — a trie over '/'-separated topic levels. Used for the subscription index
 * (value = subscriber list) and the retained store (value = message). Not thread-safe: each
 * owner serialises access. */
#ifndef MQTT_TRIE_H
#define MQTT_TRIE_H

#include <stddef.h>
#include <stdint.h>

struct mqtt_trie_node {
	struct mqtt_trie_node *parent;
	struct mqtt_trie_node **kids; /* owns; open-addressed table of cap_kids slots */
	uint32_t n_kids, cap_kids;
	uint64_t seg_hash;
	void *value; /* owned by the trie's user */
	uint32_t seg_len;
	char seg[];
};

struct mqtt_trie {
	struct mqtt_trie_node *root;
	size_t n_nodes;
	size_t max_nodes; /* 0 = unlimited */
};

int mqtt_trie_init(struct mqtt_trie *t, size_t max_nodes);
/* Frees nodes; values must already be released by the caller (see mqtt_trie_walk). */
void mqtt_trie_cleanup(struct mqtt_trie *t);
/* Finds the node for a topic/filter, creating it when create != 0. NULL when absent or
 * over max_nodes/out of memory. */
struct mqtt_trie_node *mqtt_trie_get(struct mqtt_trie *t, const uint8_t *topic, size_t n,
				     int create);
struct mqtt_trie_node *mqtt_trie_child(const struct mqtt_trie_node *node, const uint8_t *seg,
				       size_t n);
/* Removes node and its empty ancestors if they hold no value and no children. */
void mqtt_trie_prune(struct mqtt_trie *t, struct mqtt_trie_node *node);

typedef void (*mqtt_trie_visit)(struct mqtt_trie_node *node, void *ctx);
/* Calls visit for every node whose value is set, below and including node. */
void mqtt_trie_walk(struct mqtt_trie_node *node, mqtt_trie_visit visit, void *ctx);
/* Calls visit for each node whose topic matches filter (retained lookup). */
void mqtt_trie_match_filter(struct mqtt_trie *t, const uint8_t *filter, size_t n,
			    mqtt_trie_visit visit, void *ctx);
/* Calls visit for each node whose filter matches topic (subscription lookup). */
void mqtt_trie_match_topic(struct mqtt_trie *t, const uint8_t *topic, size_t n,
			   mqtt_trie_visit visit, void *ctx);
/* Writes the node's full path into buf (up to cap); returns its length. */
size_t mqtt_trie_path(const struct mqtt_trie_node *node, char *buf, size_t cap);

#endif
