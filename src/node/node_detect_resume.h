/* node_detect_resume.h — where detection resumes after a restart (docs/DETECTION.md "Where
 * matching resumes"): DATA_DIR/detect.pos, the log position matched and flushed, and beside
 * it DATA_DIR/detect.headers, the Zeek headers the log topics' readers held there.
 *
 *   flush ── _mark(seq, topics' headers) ──→ pending (a store ticket for the flush's records)
 *   round ── _save, once the ticket is done ──→ detect.headers (when changed), then detect.pos
 *   start ── _pos_load, then _headers_load(seq) when nothing after seq is skipped
 *
 * Owned by the detection thread alone. */
#ifndef KZ_NODE_DETECT_RESUME_H
#define KZ_NODE_DETECT_RESUME_H

#include "base/kz_buf.h"
#include "services/detect/detect.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct node_config;
struct kz_store;

struct node_detect_resume {
	const struct node_config *cfg;
	struct kz_store *store;
	uint64_t cp_seq, cp_ticket, cp_saved; /* marked; the store's ticket for it; last saved */
	bool cp_pending;
	bool headers_big;              /* the last snapshot was over detect.max_headers_bytes (said once) */
	struct kz_buf cp_headers, hdr; /* the topics' Zeek headers at cp_seq (detect.headers); scratch */
	struct kz_buf hdr_saved;       /* the headers last written, to write them again only when changed */
};

/* The log topics' readers, i from 0 to n - 1: a reader and its topic. */
typedef const struct detect_reader *(*node_detect_topic_fn)(void *ctx, size_t i, const char **topic);

void node_detect_resume_init(struct node_detect_resume *r, const struct node_config *cfg, struct kz_store *store);
void node_detect_resume_cleanup(struct node_detect_resume *r);
/* The next log record to match as saved by the last run; 0 when none is (or it is not readable). */
uint64_t node_detect_resume_pos_load(const struct node_config *cfg);
/* The headers saved at or before position seq, each to give (as detect_headers_parse). */
void node_detect_resume_headers_load(const struct node_detect_resume *r, uint64_t seq, detect_header_fn give, void *ctx);
/* After a flush: position seq and the n topics' headers there, saved by _save once the store has
 * written what the flush wrote. */
void node_detect_resume_mark(struct node_detect_resume *r, uint64_t seq, size_t n, node_detect_topic_fn topic, void *ctx);
void node_detect_resume_save(struct node_detect_resume *r);
/* At a stop: waits (up to 5 s) for the marked flush to be written, then saves. */
void node_detect_resume_last(struct node_detect_resume *r);

#endif
