/* cli_bench_adapter.c — `kizuna bench adapters`: the adapters' decode rates on one core
 * (bench/adapters.sh, BENCHMARKS.md "Adapters"). AIS: the recorded samples' sentences,
 * checksum, reassembly, 6-bit decoding and the entity update's JSON, as the node's adapter
 * does per sentence. Mode S: AVR lines of the worked examples and of the frames
 * demodulated from dump1090's capture: hex, parity, decoding, CPR and the entity update. */
#include "cli/cli.h"
#include "adapters/ais.h"
#include "adapters/ais_entity.h"
#include "adapters/modes.h"
#include "adapters/cot.h"
#include "base/kz_buf.h"
#include "base/kz_hash.h"
#include "base/kz_time.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char **read_lines(const char *path, size_t *n)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char **v = NULL, line[4096];
	size_t cap = 0;
	*n = 0;
	while (fgets(line, sizeof line, f)) {
		if (line[0] != '!')
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 1024;
			char **nv = realloc(v, cap * sizeof *v);
			if (!nv)
				break;
			v = nv;
		}
		v[(*n)++] = strdup(line);
	}
	fclose(f);
	return v;
}

struct avr_set {
	char lines[4096][40];
	size_t n;
};

static void collect_frame(void *ctx, const struct modes_frame *f)
{
	struct avr_set *s = ctx;
	if (s->n == 4096 || f->len != 14)
		return;
	char *p = s->lines[s->n++];
	*p++ = '*';
	for (unsigned i = 0; i < 14; i++)
		p += sprintf(p, "%02X", f->b[i]);
	strcpy(p, ";");
}

struct cot_bench_ctx {
	struct kz_buf out;
	unsigned long updates;
};

static void cot_bench_event(void *ctx, const struct cot_event *e)
{
	struct cot_bench_ctx *c = ctx;
	char id[160];
	kz_buf_reset(&c->out);
	c->updates += cot_to_entity(e, &c->out, id, sizeof id) == 0;
}

static void cot_bench_error(void *ctx, const char *why)
{
	(void)ctx;
	fprintf(stderr, "kizuna bench adapters: a CoT event refused: %s\n", why);
}

int cli_bench_adapter_main(int argc, char **argv)
{
	const char *shared = "../shared";
	unsigned long total = 2000000;
	static const struct option longs[] = { { "shared", required_argument, NULL, 's' },
					       { "messages", required_argument, NULL, 'n' }, { 0 } };
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "s:n:", longs, NULL)) != -1) {
		if (c == 's')
			shared = optarg;
		else if (c == 'n')
			total = strtoul(optarg, NULL, 10);
		else {
			cli_help("bench");
			return 2;
		}
	}
	kz_hash_seed();
	char path[1200];
	size_t na = 0, nb = 0;
	snprintf(path, sizeof path, "%s/data/tracks/pyais/nmea_data_sample.txt", shared);
	char **a = read_lines(path, &na);
	snprintf(path, sizeof path, "%s/data/tracks/gpsd/sample.aivdm", shared);
	char **b = read_lines(path, &nb);
	if (!a || !b) {
		fprintf(stderr, "kizuna bench adapters: the samples under %s/data/tracks are not here (--shared DIR)\n", shared);
		return 1;
	}
	struct ais_nmea nm;
	struct ais_vessels vs;
	ais_nmea_init(&nm, 60000);
	ais_vessels_init(&vs, 100000);
	struct kz_buf out;
	kz_buf_init(&out, 0);
	unsigned long sentences = 0, updates = 0;
	uint64_t t0 = kz_now_mono_ns();
	while (sentences < total) {
		for (size_t i = 0; i < na + nb && sentences < total; i++, sentences++) {
			const char *l = i < na ? a[i] : b[i - na];
			struct ais_payload p;
			struct ais_msg m;
			const char *why;
			char id[32];
			if (ais_nmea_line(&nm, l, strlen(l), sentences, &p, &why) != 1 || ais_decode(&p, &m, &why))
				continue;
			kz_buf_reset(&out);
			updates += ais_entity_update(&vs, &m, "bench", &out, id) == 0;
		}
	}
	double s = (kz_now_mono_ns() - t0) / 1e9;
	printf("ais: %lu sentences (%zu distinct, recorded samples) in %.3f s: %.0f sentences/s on one core, "
	       "%lu entity updates (%.0f/s)\n",
	       sentences, na + nb, s, sentences / s, updates, updates / s);
	/* Mode S: frames of the capture and the worked examples, as AVR lines */
	static struct avr_set set;
	static const char *const worked[] = { "*8D4840D6202CC371C32CE0576098;", "*8D40621D58C386435CC412692AD6;",
					      "*8D40621D58C382D690C8AC2863A7;", "*8D485020994409940838175B284F;",
					      "*8DA05F219B06B6AF189400CBC33F;" };
	for (size_t i = 0; i < 5; i++)
		strcpy(set.lines[set.n++], worked[i]);
	snprintf(path, sizeof path, "%s/data/tracks/dump1090/modes1.bin", shared);
	FILE *f = fopen(path, "rb");
	if (f) {
		static uint8_t iq[1 << 20];
		size_t n = fread(iq, 1, sizeof iq, f);
		fclose(f);
		uint64_t d0 = kz_now_mono_ns();
		modes_iq_demod(iq, n, collect_frame, &set);
		double ds = (kz_now_mono_ns() - d0) / 1e9;
		printf("mode s: demodulated %zu bytes of I/Q (%.2f s of signal) in %.3f s\n", n, n / 2 / 2e6, ds);
	}
	struct modes_state st;
	modes_state_init(&st, 10000, true, 37.0, 13.8);
	unsigned long frames = 0;
	updates = 0;
	t0 = kz_now_mono_ns();
	while (frames < total) {
		for (size_t i = 0; i < set.n && frames < total; i++, frames++) {
			struct modes_frame fr;
			struct modes_msg m;
			const char *why;
			char id[16];
			if (modes_avr_line(set.lines[i], strlen(set.lines[i]), &fr, &why) != 1 || modes_decode(&fr, &m, &why))
				continue;
			kz_buf_reset(&out);
			updates += modes_entity_update(&st, &m, frames / 10, "bench", &out, id) == 0;
		}
	}
	s = (kz_now_mono_ns() - t0) / 1e9;
	printf("mode s: %lu AVR frames (%zu distinct) in %.3f s: %.0f messages/s on one core, %lu entity updates "
	       "(%.0f/s)\n",
	       frames, set.n, s, frames / s, updates, updates / s);
	/* CoT: ATAK-style position reports back to back, through the stream splitter, expat and
	 * the entity update's JSON, as the TAK endpoint does per event */
	struct cot_bench_ctx cb = { .updates = 0 };
	kz_buf_init(&cb.out, 0);
	char ev[1024], *stream = malloc(1000 * sizeof ev);
	size_t sl = 0;
	for (int i = 0; stream && i < 1000; i++) {
		int n = snprintf(ev, sizeof ev,
				 "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><event version=\"2.0\" "
				 "uid=\"ANDROID-%04d\" type=\"a-f-G-U-C\" time=\"2026-12-04T10:00:00.000Z\" "
				 "start=\"2026-12-04T10:00:00.000Z\" stale=\"2026-12-04T10:06:00.000Z\" how=\"h-e\">"
				 "<point lat=\"35.%07d\" lon=\"139.%07d\" hae=\"40.5\" ce=\"9.9\" le=\"9999999.0\"/><detail>"
				 "<takv os=\"34\" version=\"4.10.0\" device=\"PHONE\" platform=\"ATAK-CIV\"/>"
				 "<contact endpoint=\"*:-1:stcp\" callsign=\"UNIT-%04d\"/><__group name=\"Cyan\" "
				 "role=\"Team Member\"/><status battery=\"88\"/><track course=\"270.5\" speed=\"1.25\"/>"
				 "</detail></event>",
				 i, i * 997, i * 991, i);
		memcpy(stream + sl, ev, (size_t)n);
		sl += (size_t)n;
	}
	struct cot_reader *rd = stream ? cot_reader_new(65536, cot_bench_event, cot_bench_error, &cb) : NULL;
	unsigned long events = 0;
	t0 = kz_now_mono_ns();
	while (rd && events < total / 10) {
		cot_reader_feed(rd, stream, sl); /* 1,000 events per feed, in one read's worth */
		events += 1000;
	}
	s = (kz_now_mono_ns() - t0) / 1e9;
	if (rd)
		printf("cot: %lu events (%zu bytes each on average) in %.3f s: %.0f events/s on one core, %lu entity updates\n",
		       events, sl / 1000, s, events / s, cb.updates);
	cot_reader_free(rd);
	free(stream);
	kz_buf_cleanup(&cb.out);
	modes_state_free(&st);
	ais_vessels_free(&vs);
	kz_buf_cleanup(&out);
	for (size_t i = 0; i < na; i++)
		free(a[i]);
	for (size_t i = 0; i < nb; i++)
		free(b[i]);
	free(a);
	free(b);
	return 0;
}

