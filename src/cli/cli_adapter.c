/* cli_adapter.c — `kizuna adapter decode ais|avr|beast|sbs|iq FILE|-`: the adapters' decoders
 * on a recorded feed, one JSON object per message (docs/ADAPTERS.md), with a summary of what
 * was refused and why on stderr. */
#include "cli/cli.h"
#include "adapters/ais.h"
#include "adapters/modes.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"
#include "base/kz_buf.h"

#include <stdbool.h>
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

struct mdec {
	struct modes_state st;
	struct kz_buf b;
	struct reasons rs;
	unsigned long frames, decoded;
	uint64_t clock;
};

/* One decoded Mode S message: its fields, with a position when the aircraft's frames resolve
 * one (the state is the adapter's, so pairs and local decoding work as in the node). */
static void mdec_msg(struct mdec *d, const struct modes_msg *m, const double *lat, const double *lon)
{
	d->decoded++;
	double la = 0, lo = 0;
	bool pos = lat != NULL;
	if (pos) {
		la = *lat;
		lo = *lon;
	} else if ((m->has & MODES_HAS_POS) && m->tc) {
		struct kz_buf tmp;
		kz_buf_init(&tmp, 0);
		char id[16];
		if (modes_entity_update(&d->st, m, d->clock, NULL, &tmp, id) == KZ_OK && memmem(kz_buf_head(&tmp), tmp.len, "\"position\"", 10)) {
			const struct modes_aircraft *a = NULL;
			for (size_t i = 0; i < d->st.cap && !a; i++)
				if (d->st.slot[i].icao == m->icao)
					a = &d->st.slot[i];
			if (a) {
				pos = true;
				la = a->lat;
				lo = a->lon;
			}
		}
		kz_buf_cleanup(&tmp);
	}
	kz_buf_reset(&d->b);
	if (!modes_to_json(m, pos ? &la : NULL, pos ? &lo : NULL, &d->b))
		printf("%.*s\n", (int)d->b.len, (const char *)kz_buf_head(&d->b));
}

static void mdec_frame(void *ctx, const struct modes_frame *f)
{
	struct mdec *d = ctx;
	struct modes_msg m;
	const char *why;
	d->frames++;
	d->clock += 100; /* frames of a file: 0.1 s apart, so that pairs resolve */
	if (modes_decode(f, &m, &why))
		count(&d->rs, why);
	else
		mdec_msg(d, &m, NULL, NULL);
}

static int decode_modes(FILE *in, const char *format)
{
	struct mdec d = { 0 };
	kz_hash_seed();
	if (modes_state_init(&d.st, 100000, false, 0, 0))
		return 1;
	kz_buf_init(&d.b, 0);
	if (!strcmp(format, "iq") || !strcmp(format, "beast")) {
		static uint8_t buf[1 << 16];
		size_t cap = 0, n = 0, r;
		uint8_t *all = NULL;
		struct modes_beast bs = { 0 };
		while ((r = fread(buf, 1, sizeof buf, in)) > 0) {
			if (!strcmp(format, "beast")) {
				modes_beast_feed(&bs, buf, r, mdec_frame, &d);
				continue;
			}
			if (n + r > cap) { /* I/Q: the whole capture, then demodulated */
				cap = (n + r) * 2;
				uint8_t *nb = realloc(all, cap);
				if (!nb) {
					free(all);
					fprintf(stderr, "kizuna adapter: out of memory\n");
					return 1;
				}
				all = nb;
			}
			memcpy(all + n, buf, r);
			n += r;
		}
		if (all)
			modes_iq_demod(all, n, mdec_frame, &d);
		free(all);
		if (bs.skipped)
			fprintf(stderr, "kizuna adapter: %llu bytes outside Beast frames\n", (unsigned long long)bs.skipped);
	} else {
		char line[4096];
		while (fgets(line, sizeof line, in)) {
			const char *why;
			if (!strcmp(format, "avr")) {
				struct modes_frame f;
				int rc = modes_avr_line(line, strlen(line), &f, &why);
				if (rc < 0)
					count(&d.rs, why);
				else if (rc == 1)
					mdec_frame(&d, &f);
			} else {
				struct modes_msg m;
				double lat, lon;
				int rc = modes_sbs_line(line, strlen(line), &m, &lat, &lon, &why);
				if (rc < 0)
					count(&d.rs, why);
				else if (rc == 1) {
					d.frames++;
					mdec_msg(&d, &m, (m.has & MODES_HAS_POS) ? &lat : NULL, &lon);
				}
			}
		}
	}
	fprintf(stderr, "kizuna adapter: %lu messages, %lu decoded\n", d.frames, d.decoded);
	for (unsigned i = 0; i < d.rs.k; i++)
		fprintf(stderr, "  %lu: %s\n", d.rs.n[i], d.rs.why[i]);
	kz_buf_cleanup(&d.b);
	modes_state_free(&d.st);
	return 0;
}

int cli_adapter_main(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-H"))) {
		cli_help("adapter");
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "replay"))
		return argc >= 3 ? cli_adapter_replay(argc, argv) : 2;
	static const char *const formats[] = { "ais", "avr", "beast", "sbs", "iq" };
	bool known = false;
	for (size_t i = 0; argc == 4 && i < sizeof formats / sizeof formats[0]; i++)
		known |= !strcmp(argv[2], formats[i]);
	if (argc != 4 || strcmp(argv[1], "decode") || !known) {
		fprintf(stderr, "kizuna adapter: usage: kizuna adapter decode ais|avr|beast|sbs|iq FILE|- (kizuna help adapter)\n");
		return 2;
	}
	FILE *in = strcmp(argv[3], "-") ? fopen(argv[3], "rb") : stdin;
	if (!in) {
		fprintf(stderr, "kizuna adapter: %s: cannot be read\n", argv[3]);
		return 1;
	}
	int rc = !strcmp(argv[2], "ais") ? decode_ais(in) : decode_modes(in, argv[2]);
	if (in != stdin)
		fclose(in);
	return rc;
}
