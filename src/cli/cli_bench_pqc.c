/* cli_bench_pqc.c — `kizuna bench pqc`: ML-KEM-768 keygen, encaps and decaps in operations
 * per second, microseconds and CPU cycles (the time-stamp counter, x86-64) per operation; then
 * ML-DSA-65 keygen, sign and verify. */
#include "cli/cli.h"
#include "base/kz_time.h"
#include "crypto/kz_mldsa.h"
#include "crypto/kz_mlkem.h"
#include "cli/cli_client.h"
#include "net/net.h"

#include <openssl/err.h>
#include <pthread.h>

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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
	/* ML-DSA-65: key generation, signing (hedged) and verification of a 64-byte message */
	static uint8_t pk[KZ_MLDSA65_PK_BYTES], sk[KZ_MLDSA65_SK_BYTES], sig[KZ_MLDSA65_SIG_BYTES];
	uint8_t msg[64], rnd[32];
	memset(msg, 1, sizeof msg);
	struct op dg = { "mldsa65_keygen", 0, 0 }, ds = { "mldsa65_sign", 0, 0 }, dv = { "mldsa65_verify", 0, 0 };
	unsigned nd = n / 4 ? n / 4 : 1;
	for (unsigned i = 0; i < nd + nd / 10; i++) {
		bool count = i >= nd / 10;
		seed[0] = (uint8_t)i, seed[1] = (uint8_t)(i >> 8), rnd[0] = (uint8_t)i;
		uint64_t t0 = kz_now_mono_ns(), c0 = cycles();
		kz_mldsa65_keygen_seed(seed, pk, sk);
		uint64_t t1 = kz_now_mono_ns(), c1 = cycles();
		bad += kz_mldsa65_sign(sk, msg, sizeof msg, NULL, 0, rnd, sig) != 0;
		uint64_t t2 = kz_now_mono_ns(), c2 = cycles();
		bad += kz_mldsa65_verify(pk, sizeof pk, msg, sizeof msg, NULL, 0, sig, sizeof sig) != 0;
		uint64_t t3 = kz_now_mono_ns(), c3 = cycles();
		if (count) {
			dg.ns += t1 - t0, dg.cyc += c1 - c0;
			ds.ns += t2 - t1, ds.cyc += c2 - c1;
			dv.ns += t3 - t2, dv.cyc += c3 - c2;
		}
	}
	printf("# ML-DSA-65, portable C, %u iterations of each (after %u warm-up)\n", nd, nd / 10);
	report(&dg, nd);
	report(&ds, nd);
	report(&dv, nd);
	if (bad) {
		fprintf(stderr, "kizuna bench pqc: %u operations disagreed\n", bad);
		return 1;
	}
	return 0;
}

/* ---------- kizuna bench handshake ---------- */

struct hs_thread {
	SSL_CTX *ctx;
	const char *host;
	int port;
	uint64_t ms, done, failed;
	pthread_t t;
};

/* Full mutual-TLS handshakes to host:port in a loop for ms milliseconds, each followed by an
 * MQTT 3.1.1 CONNECT/CONNACK so the server has finished its part; counts the completed and
 * the failed ones. Blocking; one call per thread. */
static void bench_handshakes(SSL_CTX *ctx, const char *host, int port, uint64_t ms, uint64_t *done,
			     uint64_t *failed)
{
	static const unsigned char connect_pkt[] = { 0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0 };
	char addr[300];
	snprintf(addr, sizeof addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	uint64_t end = kz_now_mono_ms() + ms;
	*done = *failed = 0;
	while (kz_now_mono_ms() < end) {
		BIO *b = BIO_new_ssl_connect(ctx);
		SSL *ssl = NULL;
		unsigned char ack[4];
		int fd = -1;
		/* TCP_NODELAY: otherwise the client's last flight waits for a delayed ACK (~40 ms) */
		bool ok = b && BIO_get_ssl(b, &ssl) == 1 && BIO_set_conn_hostname(b, addr) == 1 &&
			  SSL_set_tlsext_host_name(ssl, host) == 1 && BIO_do_connect(b) > 0 &&
			  BIO_get_fd(b, &fd) >= 0 && BIO_set_tcp_ndelay(fd, 1) == 1 && BIO_do_handshake(b) > 0 &&
			  BIO_write(b, connect_pkt, sizeof connect_pkt) == (int)sizeof connect_pkt && BIO_flush(b) == 1 &&
			  BIO_read(b, ack, 4) == 4 && ack[0] == 0x20 && ack[3] == 0;
		if (ok) {
			(*done)++;
			SSL_shutdown(ssl);
		} else {
			(*failed)++;
			ERR_clear_error();
		}
		BIO_free_all(b);
	}
}

static void *hs_main(void *arg)
{
	struct hs_thread *h = arg;
	bench_handshakes(h->ctx, h->host, h->port, h->ms, &h->done, &h->failed);
	return NULL;
}


int cli_bench_handshake_main(int argc, char **argv)
{
	struct cli_opts o;
	cli_opts_default(&o);
	const char *groups = NET_TLS_DEFAULT_GROUPS, *data = NULL;
	unsigned threads = 2, seconds = 10;
	int pid = 0, c;
	static const struct option opts[] = { CLI_COMMON_LONG,
					      { "groups", required_argument, NULL, 3001 },
					      { "threads", required_argument, NULL, 3002 },
					      { "duration", required_argument, NULL, 3003 },
					      { "broker-pid", required_argument, NULL, 3004 },
					      { "help", no_argument, NULL, 3005 },
					      { NULL, 0, NULL, 0 } };
	optind = 1;
	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		switch (c) {
		case 'd': data = optarg; break;
		case 3001: groups = optarg; break;
		case 3002: threads = (unsigned)atoi(optarg); break;
		case 3003: seconds = (unsigned)atoi(optarg); break;
		case 3004: pid = atoi(optarg); break;
		case 3005:
			printf("usage: kizuna bench handshake [--groups G] [--threads T] [--duration S] [--broker-pid P]\n"
			       "                              [connection options of kizuna pub]\n"
			       "Full mutual-TLS 1.3 handshakes (each with an MQTT CONNECT/CONNACK) in a loop from T\n"
			       "threads for S seconds, offering only the groups G (default %s).\n",
			       NET_TLS_DEFAULT_GROUPS);
			return 0;
		default:
			if (cli_opts_parse(&o, c, optarg) != 1) {
				fprintf(stderr, "kizuna bench handshake: bad option (see --help)\n");
				return 2;
			}
		}
	}
	if (threads < 1 || threads > 64 || seconds < 1) {
		fprintf(stderr, "kizuna bench handshake: --threads 1..64, --duration at least 1\n");
		return 2;
	}
	int orc = cli_opts_finish(&o, data, "bench handshake");
	if (orc)
		return orc;
	struct net_tls_config t = { o.ca, o.cert, o.key, groups, NULL };
	char why[512];
	SSL_CTX *ctx = net_tls_client_ctx(&t, why, sizeof why);
	if (!ctx) {
		fprintf(stderr, "kizuna bench handshake: %s\n", why);
		return 1;
	}
	struct hs_thread *h = calloc(threads, sizeof *h);
	uint64_t c0 = pid ? cli_proc_cpu_ticks(pid) : 0, t0 = kz_now_mono_ns();
	for (unsigned i = 0; i < threads; i++) {
		h[i] = (struct hs_thread){ ctx, o.host, o.port, (uint64_t)seconds * 1000, 0, 0, 0 };
		pthread_create(&h[i].t, NULL, hs_main, &h[i]);
	}
	uint64_t done = 0, failed = 0;
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(h[i].t, NULL);
		done += h[i].done;
		failed += h[i].failed;
	}
	double secs = (double)(kz_now_mono_ns() - t0) / 1e9;
	uint64_t c1 = pid ? cli_proc_cpu_ticks(pid) : 0;
	printf("groups=%s handshakes=%llu failed=%llu handshakes_per_s=%.0f", groups, (unsigned long long)done,
	       (unsigned long long)failed, (double)done / secs);
	if (pid && done)
		printf(" server_cpu_us_per_handshake=%.1f", (double)(c1 - c0) * 1e6 / (double)sysconf(_SC_CLK_TCK) / (double)done);
	printf("\n");
	free(h);
	SSL_CTX_free(ctx);
	return failed && !done ? 1 : 0;
}
