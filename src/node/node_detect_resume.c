/* node_detect_resume.c — detect.pos and detect.headers (node_detect_resume.h). */
#include "node/node_detect_resume.h"
#include "node/node_config.h"
#include "base/kz_file.h"
#include "base/kz_log.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POS_FILE "detect.pos"
#define HEADERS_FILE "detect.headers"

void node_detect_resume_init(struct node_detect_resume *r, const struct node_config *cfg, struct kz_store *store)
{
	memset(r, 0, sizeof *r);
	r->cfg = cfg;
	r->store = store;
	kz_buf_init(&r->cp_headers, 0);
	kz_buf_init(&r->hdr, 0);
	kz_buf_init(&r->hdr_saved, 0);
}

void node_detect_resume_cleanup(struct node_detect_resume *r)
{
	kz_buf_cleanup(&r->cp_headers);
	kz_buf_cleanup(&r->hdr);
	kz_buf_cleanup(&r->hdr_saved);
}

/* Not readable: matching starts at the log's end, as on a first start. */
uint64_t node_detect_resume_pos_load(const struct node_config *cfg)
{
	char path[1200], text[64] = "";
	snprintf(path, sizeof path, "%s/" POS_FILE, cfg->data_dir);
	ssize_t n = kz_file_read_small(path, text, sizeof text);
	if (n < 0)
		return 0;
	uint64_t v;
	if (detect_pos_parse(text, (size_t)n, &v)) {
		kz_warn("detect: %s does not hold a log position (\"next_seq N\"); matching starts at the log's end", path);
		return 0;
	}
	return v;
}

/* Nothing when the file is absent, unreadable, over the cap, or saved after seq (a crash
 * between the two files). */
void node_detect_resume_headers_load(const struct node_detect_resume *r, uint64_t seq, detect_header_fn give, void *ctx)
{
	char path[1200];
	snprintf(path, sizeof path, "%s/" HEADERS_FILE, r->cfg->data_dir);
	size_t got = 0;
	char *text = kz_file_read_whole(path, r->cfg->detect_max_headers, &got);
	if (!text && errno == ENOENT)
		return;
	if (!text && errno == EFBIG) {
		kz_warn("detect: %s is larger than detect.max_headers_bytes (%u) and is not read; topics whose header "
			"came before log record %llu are read without one until it comes again", path,
			r->cfg->detect_max_headers, (unsigned long long)seq);
		return;
	}
	long given = text ? detect_headers_parse(text, got, seq, give, ctx) : -1;
	if (given >= 0)
		kz_info("detect: the Zeek headers of %ld log topics as they were at log record %llu", given,
			(unsigned long long)seq);
	else
		kz_warn("detect: %s does not hold the topics' headers at log record %llu; topics whose header came "
			"before it are read without one until it comes again", path, (unsigned long long)seq);
	free(text);
}

static void headers_snap(struct node_detect_resume *r, uint64_t seq, size_t n, node_detect_topic_fn topic, void *ctx)
{
	int rc = detect_headers_begin(&r->cp_headers, seq);
	for (size_t i = 0; i < n && !rc && r->cp_headers.len <= r->cfg->detect_max_headers; i++) { /* over it: dropped below */
		const char *name;
		const struct detect_reader *rd = topic(ctx, i, &name);
		rc = detect_headers_add(&r->cp_headers, name, rd, &r->hdr);
	}
	if (!rc)
		rc = detect_headers_end(&r->cp_headers);
	bool big = !rc && r->cp_headers.len > r->cfg->detect_max_headers;
	if (big && !r->headers_big)
		kz_warn("detect: the log topics' Zeek headers are over detect.max_headers_bytes (%u): none are saved, "
			"and after a restart those topics are read without a header until it comes again",
			r->cfg->detect_max_headers);
	r->headers_big = big;
	if (big) /* an empty set in their place, so that an older file is not taken for this position */
		rc = detect_headers_begin(&r->cp_headers, seq) || detect_headers_end(&r->cp_headers);
	if (rc)
		kz_buf_reset(&r->cp_headers); /* out of memory: no headers saved */
}

void node_detect_resume_mark(struct node_detect_resume *r, uint64_t seq, size_t n, node_detect_topic_fn topic, void *ctx)
{
	headers_snap(r, seq, n, topic, ctx);
	r->cp_seq = seq;
	r->cp_ticket = kz_store_ticket(r->store);
	r->cp_pending = true;
}

void node_detect_resume_save(struct node_detect_resume *r)
{
	if (!r->cp_pending || !kz_store_ticket_done(r->store, r->cp_ticket))
		return;
	r->cp_pending = false;
	if (r->cp_seq == r->cp_saved)
		return;
	/* the headers first, and only when they changed (they hold at every position from theirs
	 * up to the next file written): a crash between the two leaves headers of a position after
	 * the saved one, which _headers_load ignores */
	if (!r->cp_headers.len) /* no snapshot (out of memory): an older headers file would be taken */
		return;
	const char *dir = r->cfg->data_dir;
	if (!detect_headers_same(&r->cp_headers, &r->hdr_saved)) {
		if (kz_file_replace(dir, HEADERS_FILE, kz_buf_head(&r->cp_headers), r->cp_headers.len, 0600)) {
			/* not the position either: the headers file on disk would be taken for it */
			kz_warn("detect: cannot save the topics' headers in %s/" HEADERS_FILE " (the position is not saved): %s",
				dir, strerror(errno));
			return;
		}
		struct kz_buf t = r->hdr_saved; /* as written; the next mark makes cp_headers again */
		r->hdr_saved = r->cp_headers, r->cp_headers = t;
	}
	char text[DETECT_POS_MAX];
	size_t len = detect_pos_format(r->cp_seq, text);
	if (kz_file_replace(dir, POS_FILE, text, len, 0600))
		kz_warn("detect: cannot save the log position in %s/" POS_FILE ": %s", dir, strerror(errno));
	else
		r->cp_saved = r->cp_seq;
}

void node_detect_resume_last(struct node_detect_resume *r)
{
	for (int i = 0; i < 5000 && !kz_store_ticket_done(r->store, r->cp_ticket); i++)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	node_detect_resume_save(r);
}
