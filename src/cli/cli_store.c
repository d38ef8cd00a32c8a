/* cli_store.c — `kizuna store verify | repair | dump`: offline work on DIR/log. */
#include "cli/cli_store.h"
#include "base/kz_err.h"
#include "base/kz_utf8.h"
#include "store/store.h"

#include <getopt.h>
#include <limits.h>
#include <openssl/evp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RECORD (256u << 20) /* generous: only sanity for offline scans */

static void usage(FILE *f)
{
	fprintf(f, "usage: kizuna store (verify | repair | dump) [--data DIR] [--from SEQ]\n");
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
	unsigned char *out = malloc(4 * ((n + 2) / 3) + 1);
	if (!out || n > INT_MAX) {
		free(out);
		fputs("null", f);
		return;
	}
	EVP_EncodeBlock(out, p, (int)n);
	fprintf(f, "\"%s\"", out);
	free(out);
}

struct scan_ctx {
	bool dump;
	uint64_t n;
	int bad;
};

static int scan_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n,
		   const struct kz_log_pos *pos)
{
	struct scan_ctx *sc = ctx;
	(void)pos;
	struct kz_record r;
	const char *why;
	sc->n++;
	if (kz_record_decode(body, n, &r, &why)) {
		fprintf(stderr, "kizuna store: record %" PRIu64 ": %s\n", seq, why);
		sc->bad++;
		return 0;
	}
	if (!sc->dump)
		return 0;
	char id[37];
	kz_uuid_format(r.id, id);
	printf("{\"seq\":%" PRIu64 ",\"id\":\"%s\",\"time_ns\":%" PRIu64 ",\"topic\":", seq, id, r.time_ns);
	json_str(stdout, r.topic.p, r.topic.len);
	printf(",\"qos\":%u,\"retain\":%s,\"origin_node\":", r.qos, r.retain ? "true" : "false");
	json_str(stdout, r.origin_node.p, r.origin_node.len);
	printf(",\"origin_id\":");
	json_str(stdout, r.origin_id.p, r.origin_id.len);
	if (r.label.len) {
		printf(",\"label\":");
		json_str(stdout, r.label.p, r.label.len);
	}
	if (r.content_type.len) {
		printf(",\"content_type\":");
		json_str(stdout, r.content_type.p, r.content_type.len);
	}
	if (r.expiry_ns)
		printf(",\"expiry_ns\":%" PRIu64, r.expiry_ns);
	if (kz_utf8_valid(r.payload.p, r.payload.len, false)) {
		printf(",\"payload\":");
		json_str(stdout, r.payload.p, r.payload.len);
	} else {
		printf(",\"payload_base64\":");
		b64(stdout, r.payload.p, r.payload.len);
	}
	printf("}\n");
	return 0;
}

static void report(void *ctx, const char *line)
{
	(void)ctx;
	printf("%s\n", line);
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
	if (!strcmp(verb, "repair")) {
		if (kz_log_repair(dir, MAX_RECORD, report, NULL, why, sizeof why)) {
			fprintf(stderr, "kizuna store repair: %s\n", why);
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
	int rc = kz_log_scan(dir, from, NULL, MAX_RECORD, scan_cb, &sc, why, sizeof why);
	if (rc) {
		fprintf(stderr, "kizuna store %s: %s (run `kizuna store repair`)\n", verb, why);
		return 1;
	}
	if (!sc.dump)
		printf("%s: %" PRIu64 " records, %d undecodable\n", dir, sc.n, sc.bad);
	return sc.bad ? 1 : 0;
}
