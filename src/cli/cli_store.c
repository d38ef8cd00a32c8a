/* cli_store.c — `kizuna store verify | repair | dump`: offline work on DIR/log. */
#include "cli/cli_store.h"
#include "base/kz_err.h"
#include "base/kz_base64.h"
#include "base/kz_time.h"
#include "base/kz_utf8.h"
#include "store/store.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_RECORD (256u << 20) /* generous: only sanity for offline scans */

static void usage(FILE *f)
{
	fprintf(f, "usage: kizuna store (verify | repair | dump | reindex) [--data DIR] [--from SEQ]\n");
}

static void json_str(FILE *f, const uint8_t *p, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		uint8_t ch = p[i];
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void b64(FILE *f, const uint8_t *p, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	if (!out) {
		fputs("null", f);
		return;
	}
	kz_base64(p, n, out);
	fprintf(f, "\"%s\"", out);
	free(out);
}

void cli_record_json(FILE *f, uint64_t seq, const struct kz_record *r)
{
	static const char *const prec[] = { "routine", "priority", "immediate", "flash" };
	char id[37], t[32];
	kz_uuid_format(r->id, id);
	kz_time_format(r->time_ns, t);
	fprintf(f, "{\"seq\":%" PRIu64 ",\"id\":\"%s\",\"time\":\"%s\",\"time_ns\":%" PRIu64 ",\"topic\":",
		seq, id, t, r->time_ns);
	json_str(f, r->topic.p, r->topic.len);
	fprintf(f, ",\"qos\":%u,\"retain\":%s,\"precedence\":\"%s\",\"origin_node\":", r->qos,
		r->retain ? "true" : "false", prec[r->precedence & 3]);
	json_str(f, r->origin_node.p, r->origin_node.len);
	fprintf(f, ",\"origin_id\":");
	json_str(f, r->origin_id.p, r->origin_id.len);
	if (r->source_time_ns) {
		kz_time_format(r->source_time_ns, t);
		fprintf(f, ",\"source_time\":\"%s\"", t);
	}
	if (r->label.len) { /* canonical label text (docs/POLICY.md) */
		fprintf(f, ",\"label\":");
		json_str(f, r->label.p, r->label.len);
	}
	if (r->content_type.len) {
		fprintf(f, ",\"content_type\":");
		json_str(f, r->content_type.p, r->content_type.len);
	}
	if (r->expiry_ns) {
		kz_time_format(r->expiry_ns, t);
		fprintf(f, ",\"expiry\":\"%s\"", t);
	}
	if (kz_utf8_valid(r->payload.p, r->payload.len, false)) {
		fprintf(f, ",\"payload\":");
		json_str(f, r->payload.p, r->payload.len);
	} else {
		fprintf(f, ",\"payload_base64\":");
		b64(f, r->payload.p, r->payload.len);
	}
	fputc('}', f);
}

struct scan_ctx {
	bool dump;
	uint64_t n;
	int bad;
};

static int scan_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n,
		   const struct kz_reclog_pos *pos)
{
	(void)pos;
	struct scan_ctx *sc = ctx;
	struct kz_record r;
	const char *why;
	sc->n++;
	if (kz_record_decode(body, n, &r, &why)) {
		fprintf(stderr, "kizuna store: record %" PRIu64 ": %s\n", seq, why);
		sc->bad++;
		return 0;
	}
	if (sc->dump) {
		cli_record_json(stdout, seq, &r);
		fputc('\n', stdout);
	}
	return 0;
}

/* The highest sequence number DIR/index.db knows (0: none, or no index). */
static uint64_t index_high_water(const char *data, const char *logdir)
{
	char path[4200], why[512];
	snprintf(path, sizeof path, "%s/index.db", data);
	struct stat st;
	if (stat(path, &st))
		return 0;
	struct kz_index_config icfg = { path, logdir, MAX_RECORD, NULL, 0, true };
	struct kz_index *ix;
	if (kz_index_open(&icfg, &ix, why, sizeof why))
		return 0;
	uint64_t hw = 0;
	(void)kz_index_check(ix, UINT64_MAX, &hw, why, sizeof why);
	kz_index_close(ix);
	return hw;
}

/* Builds a new index beside the old one from the log alone, then puts it in its place. */
static int reindex(const char *data, const char *logdir, char *why, size_t why_len)
{
	char path[4200], tmp[4300], side[4300];
	snprintf(path, sizeof path, "%s/index.db", data);
	snprintf(tmp, sizeof tmp, "%s.reindex", path);
	static const char *const sfx[] = { "", "-wal", "-shm" };
	for (size_t i = 0; i < 3; i++) { /* left by an interrupted reindex */
		snprintf(side, sizeof side, "%s%s", tmp, sfx[i]);
		(void)unlink(side);
	}
	/* the numbers the old index saw stay used, even when the log no longer holds them */
	uint64_t hw = index_high_water(data, logdir);
	if (hw && kz_reclog_raise_floor(logdir, hw + 1)) {
		snprintf(why, why_len, "cannot write %s/seq.floor: %s", logdir, strerror(errno));
		return KZ_EIO;
	}
	struct kz_index_config icfg = { tmp, logdir, MAX_RECORD, NULL, 0, false };
	struct kz_index *ix;
	uint64_t t0 = kz_now_mono_ms(), added;
	int rc = kz_index_open(&icfg, &ix, why, why_len);
	if (rc)
		return rc;
	/* in batches, with a progress line on a terminal (every 2 s in a log otherwise) */
	uint64_t total = 0, said = t0, batch;
	bool tty = isatty(2);
	do {
		rc = kz_index_catch_up(ix, 50000, &batch, why, why_len);
		total += rc ? 0 : batch;
		uint64_t now = kz_now_mono_ms();
		if (!rc && batch == 50000 && (tty || now - said >= 2000)) {
			said = now;
			fprintf(stderr, "%s%" PRIu64 " records indexed, %" PRIu64 " records/s%s", tty ? "\r" : "kizuna store reindex: ",
				total, total * 1000 / (now - t0 ? now - t0 : 1), tty ? "" : "\n");
		}
	} while (!rc && batch == 50000);
	if (tty && total >= 50000)
		fputc('\n', stderr);
	added = total;
	kz_index_close(ix);
	if (rc)
		return rc;
	/* The old index's WAL must not meet the new file. */
	snprintf(side, sizeof side, "%s-wal", path);
	(void)unlink(side);
	snprintf(side, sizeof side, "%s-shm", path);
	(void)unlink(side);
	if (rename(tmp, path)) {
		snprintf(why, why_len, "cannot rename %s into place: %s", tmp, strerror(errno));
		return KZ_EIO;
	}
	printf("%s: %" PRIu64 " records indexed from %s in %" PRIu64 " ms\n", path, added, logdir,
	       kz_now_mono_ms() - t0);
	return KZ_OK;
}

static void report(void *ctx, const char *line)
{
	(*(unsigned *)ctx)++;
	printf("%s\n", line);
}

/* After a repair cut records out of the log: the index names records that are gone, so it
 * goes (the node rebuilds it at start), and the numbers it saw stay used. */
static void repair_invalidate(const char *data, const char *logdir)
{
	uint64_t hw = index_high_water(data, logdir);
	if (hw && kz_reclog_raise_floor(logdir, hw + 1))
		fprintf(stderr, "kizuna store repair: cannot record that numbers up to %" PRIu64 " were used: %s\n", hw,
			strerror(errno));
	static const char *const sfx[] = { "", "-wal", "-shm" };
	char p[4300];
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s/index.db%s", data, sfx[i]);
		(void)unlink(p);
	}
	printf("the index (%s/index.db) was removed: the node rebuilds it from the repaired log at start "
	       "(or run `kizuna store reindex`)%s\n", data, hw ? "; new records will not reuse the numbers it knew" : "");
}

int cli_store_main(int argc, char **argv)
{
	if (argc < 2 || (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *verb = argv[1];
	const char *data = "./var";
	uint64_t from = 1;
	static const struct option opts[] = { { "data", required_argument, NULL, 'd' },
					      { "from", required_argument, NULL, 'F' },
					      { NULL, 0, NULL, 0 } };
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "d:", opts, NULL)) != -1) {
		switch (c) {
		case 'd': data = optarg; break;
		case 'F': from = strtoull(optarg, NULL, 10); break;
		default: usage(stderr); return 2;
		}
	}
	char dir[4200], why[8192] = "";
	snprintf(dir, sizeof dir, "%s/log", data);
	struct stat lst;
	if (kz_data_dir_check(data, why, sizeof why) || stat(dir, &lst) || !S_ISDIR(lst.st_mode)) {
		if (!why[0])
			snprintf(why, sizeof why, "%s: no record log here (a node has not run on %s)", dir, data);
		fprintf(stderr, "kizuna store %s: %s\n", verb, why);
		return 1;
	}
	if (!strcmp(verb, "check")) /* the name some expect; verify is the documented one */
		verb = "verify";
	if (!strcmp(verb, "repair") || !strcmp(verb, "reindex")) {
		/* writers: only with the node stopped */
		int lock = kz_data_lock(data, why, sizeof why);
		if (lock < 0) {
			fprintf(stderr, "kizuna store %s: %s; stop the node first\n", verb, why);
			return 1;
		}
		unsigned cut = 0;
		int rc = !strcmp(verb, "repair") ? kz_reclog_repair(dir, MAX_RECORD, report, &cut, why, sizeof why)
						 : reindex(data, dir, why, sizeof why);
		if (!rc && cut)
			repair_invalidate(data, dir);
		close(lock);
		if (rc) {
			fprintf(stderr, "kizuna store %s: %s\n", verb, why);
			return 1;
		}
		return 0;
	}
	if (strcmp(verb, "verify") && strcmp(verb, "dump")) {
		fprintf(stderr, "kizuna store: unknown action '%s'\n", verb);
		usage(stderr);
		return 2;
	}
	struct scan_ctx sc = { .dump = !strcmp(verb, "dump") };
	int rc = kz_reclog_scan(dir, from, NULL, MAX_RECORD, scan_cb, &sc, why, sizeof why);
	if (rc) {
		fprintf(stderr, "kizuna store %s: %s (run `kizuna store repair`)\n", verb, why);
		return 1;
	}
	if (!sc.dump)
		printf("%s: %" PRIu64 " records, %d undecodable\n", dir, sc.n, sc.bad);
	return sc.bad ? 1 : 0;
}
