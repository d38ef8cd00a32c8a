/* cli_bench_pqc.c — `kizuna bench pqc`: ML-KEM-768 keygen, encaps and decaps in operations
 * per second, microseconds and CPU cycles (the time-stamp counter, x86-64) per operation. */
#include "cli/cli.h"
#include "base/kz_time.h"
#include "crypto/kz_mlkem.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <x86intrin.h>
static uint64_t cycles(void) { return __rdtsc(); }
#else
static uint64_t cycles(void) { return 0; }
#endif

struct op {
	const char *name;
	uint64_t ns, cyc;
};

static void report(const struct op *o, unsigned n)
{
	double us = (double)o->ns / n / 1000.0;
	if (o->cyc)
		printf("%-22s ops_per_s=%.0f us_per_op=%.2f cycles_per_op=%.0f\n", o->name, 1e6 / us, us,
		       (double)o->cyc / n);
	else
		printf("%-22s ops_per_s=%.0f us_per_op=%.2f\n", o->name, 1e6 / us, us);
}

int cli_bench_pqc_main(int argc, char **argv)
{
	unsigned n = 2000;
	static const struct option opts[] = { { "iterations", required_argument, NULL, 'n' },
					      { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:h", opts, NULL)) != -1) {
		if (c == 'n' && atoi(optarg) > 0) {
			n = (unsigned)atoi(optarg);
		} else {
			fprintf(c == 'h' ? stdout : stderr, "usage: kizuna bench pqc [--iterations N]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	static uint8_t ek[KZ_MLKEM768_EK_BYTES], dk[KZ_MLKEM768_DK_BYTES], ct[KZ_MLKEM768_CT_BYTES];
	uint8_t seed[KZ_MLKEM_SEED_BYTES], m[32], ss[32], ss2[32];
	memset(seed, 7, sizeof seed);
	memset(m, 9, sizeof m);
	struct op kg = { "mlkem768_keygen", 0, 0 }, en = { "mlkem768_encaps", 0, 0 }, de = { "mlkem768_decaps", 0, 0 };
	unsigned bad = 0;
	for (unsigned i = 0; i < n + n / 10; i++) { /* the first tenth warms up, not counted */
		bool count = i >= n / 10;
		seed[0] = (uint8_t)i, seed[1] = (uint8_t)(i >> 8), m[0] = (uint8_t)i;
		uint64_t t0 = kz_now_mono_ns(), c0 = cycles();
		kz_mlkem768_keygen_seed(seed, ek, dk);
		uint64_t t1 = kz_now_mono_ns(), c1 = cycles();
		kz_mlkem768_encaps_m(ek, m, ct, ss);
		uint64_t t2 = kz_now_mono_ns(), c2 = cycles();
		kz_mlkem768_decaps(dk, ct, ss2);
		uint64_t t3 = kz_now_mono_ns(), c3 = cycles();
		bad += memcmp(ss, ss2, sizeof ss) != 0;
		if (count) {
			kg.ns += t1 - t0, kg.cyc += c1 - c0;
			en.ns += t2 - t1, en.cyc += c2 - c1;
			de.ns += t3 - t2, de.cyc += c3 - c2;
		}
	}
	printf("# ML-KEM-768, portable C, %u iterations of each (after %u warm-up)\n", n, n / 10);
	report(&kg, n);
	report(&en, n);
	report(&de, n);
	if (bad) {
		fprintf(stderr, "kizuna bench pqc: %u decapsulations disagreed\n", bad);
		return 1;
	}
	return 0;
}
