/* cli_adapter.c — `kizuna adapter decode ais FILE|-`: the adapters' decoders on a recorded
 * feed, one JSON object per message (docs/ADAPTERS.md), with a summary of what was refused
 * and why on stderr. */
#include "cli/cli.h"
#include "adapters/ais.h"
#include "base/kz_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct reasons {
	const char *why[32];
	unsigned long n[32];
	unsigned k;
};

static void count(struct reasons *r, const char *why)
{
	for (unsigned i = 0; i < r->k; i++)
		if (r->why[i] == why) {
			r->n[i]++;
			return;
		}
	if (r->k < 32) {
		r->why[r->k] = why;
		r->n[r->k++] = 1;
	}
}

static int decode_ais(FILE *in)
{
	struct ais_nmea nm;
	ais_nmea_init(&nm, 60000);
	struct reasons rs = { 0 };
	struct kz_buf b;
	kz_buf_init(&b, 0);
	char line[4096];
	unsigned long msgs = 0, decoded = 0, lines = 0;
	while (fgets(line, sizeof line, in)) {
		lines++;
		struct ais_payload p;
		struct ais_msg m;
		const char *why;
		int r = ais_nmea_line(&nm, line, strlen(line), lines, &p, &why); /* the line number is the clock */
		if (r < 0)
			count(&rs, why);
		if (r != 1)
			continue;
		msgs++;
		if (ais_decode(&p, &m, &why)) {
			count(&rs, why);
			continue;
		}
		decoded++;
		kz_buf_reset(&b);
		if (!ais_to_json(&m, &b))
			printf("%.*s\n", (int)b.len, (const char *)kz_buf_head(&b));
	}
	kz_buf_cleanup(&b);
	fprintf(stderr, "kizuna adapter: %lu sentences, %lu messages, %lu decoded\n", (unsigned long)nm.sentences, msgs,
		decoded);
	for (unsigned i = 0; i < rs.k; i++)
		fprintf(stderr, "  %lu: %s\n", rs.n[i], rs.why[i]);
	return 0;
}

int cli_adapter_main(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-H"))) {
		cli_help("adapter");
		return 0;
	}
	if (argc != 4 || strcmp(argv[1], "decode") || strcmp(argv[2], "ais")) {
		fprintf(stderr, "kizuna adapter: usage: kizuna adapter decode ais FILE|- (kizuna help adapter)\n");
		return 2;
	}
	FILE *in = strcmp(argv[3], "-") ? fopen(argv[3], "r") : stdin;
	if (!in) {
		fprintf(stderr, "kizuna adapter: %s: cannot be read\n", argv[3]);
		return 1;
	}
	int rc = decode_ais(in);
	if (in != stdin)
		fclose(in);
	return rc;
}
