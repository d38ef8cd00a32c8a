/* cli_ca.c — `kizuna ca init|issue|renew|revoke|list|crl|token|export-p12` and `kizuna enroll`. */
#include "cli/cli.h"
#include "base/kz_err.h"
#include "base/kz_time.h"
#include "node/node_config.h"
#include "store/store.h"
#include "trust/ca.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: kizuna ca init   [--config FILE] [--data DIR] [--trust-domain TD] [--org ORG]\n"
		   "       kizuna ca issue  [--config FILE] [--data DIR] --id SPIFFE-ID [--lifetime DUR] [--server NAMES]\n"
		   "                        (--out DIR | --cert FILE --key FILE)\n"
		   "       kizuna ca renew  [--config FILE] [--data DIR] --cert FILE [--lifetime DUR] [--out FILE]\n"
		   "       kizuna ca revoke [--config FILE] [--data DIR] (SERIAL | --cert FILE) [--reason REASON]\n"
		   "       kizuna ca list   [--config FILE] [--data DIR] [--id SPIFFE-ID]\n"
		   "       kizuna ca crl    [--config FILE] [--data DIR]\n"
		   "       kizuna ca token  [--config FILE] [--data DIR] --id SPIFFE-ID [--ttl DUR] [--lifetime DUR]\n"
		   "       kizuna ca export-p12 [--config FILE] [--data DIR] --cert FILE --key FILE --out FILE.p12\n"
		   "                        (--password-file FILE | --password-env VAR)\n"
		   "See `kizuna help ca`.\n");
}

static int dur_arg(const char *cmd, const char *opt, const char *s, uint32_t *out)
{
	uint64_t v;
	if (kz_parse_duration(s, &v) || v == 0 || v > UINT32_MAX) {
		fprintf(stderr, "kizuna %s: %s '%s' is not a duration (a number with s, m, h or d, e.g. 24h)\n", cmd,
			opt, s);
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

struct list_ctx {
	const char *id;
	int64_t now;
	unsigned n;
};

static void print_entry(const struct kz_ca_entry *e, void *arg)
{
	struct list_ctx *l = arg;
	if (l->id && strcmp(l->id, e->id) != 0)
		return;
	char nb[32], na[32];
	kz_time_format((uint64_t)e->not_before * 1000000000u, nb);
	kz_time_format((uint64_t)e->not_after * 1000000000u, na);
	nb[19] = na[19] = 'Z';
	nb[20] = na[20] = 0;
	const char *st = kz_ca_entry_status(e, l->now);
	printf("%-32s  %-7s  %s  %s  %s%s%s\n", e->serial, st, nb, na, e->id, e->status == 'R' ? "  " : "",
	       e->status == 'R' ? e->reason : "");
	l->n++;
}

/* The serial of a certificate file, through the issued list (no OpenSSL here). */
static int serial_of_file(const char *path, char out[KZ_SERIAL_HEX]);

/* `kizuna ca export-p12`: the certificate, its key and the CA in a PKCS#12 file for a browser
 * (docs/CONSOLE.md). The password comes from a file or the environment, never the command
 * line (other users can read that). */
static int export_p12(const struct node_config *cfg, const char *cert, const char *key, const char *out,
		      const char *pw_file, const char *pw_env)
{
	if (!cert || !key || !out || (!pw_file == !pw_env)) {
		fprintf(stderr, "kizuna ca export-p12: needs --cert, --key, --out and one of --password-file or "
				"--password-env\n");
		return 2;
	}
	char pw[1024] = "";
	if (pw_file) {
		FILE *f = fopen(pw_file, "r");
		if (!f || !fgets(pw, sizeof pw, f)) {
			fprintf(stderr, "kizuna ca export-p12: cannot read a password from %s\n", pw_file);
			if (f)
				fclose(f);
			return 1;
		}
		fclose(f);
		pw[strcspn(pw, "\r\n")] = 0;
	} else {
		const char *v = getenv(pw_env);
		if (!v) {
			fprintf(stderr, "kizuna ca export-p12: the environment variable %s is not set\n", pw_env);
			return 1;
		}
		snprintf(pw, sizeof pw, "%s", v);
	}
	if (strlen(pw) < 8) {
		fprintf(stderr, "kizuna ca export-p12: the password must have at least 8 characters (the file holds a "
				"private key)\n");
		return 1;
	}
	char ca[1200], why[1024];
	snprintf(ca, sizeof ca, "%s/ca.pem", cfg->ca_dir);
	struct stat st;
	int rc = kz_ca_export_p12(cert, key, stat(ca, &st) == 0 ? ca : NULL, pw, out, why, sizeof why);
	memset(pw, 0, sizeof pw);
	if (rc) {
		fprintf(stderr, "kizuna ca export-p12: %s\n", why);
		return 1;
	}
	printf("%s: certificate, key%s, for a browser (docs/CONSOLE.md)\n", out,
	       stat(ca, &st) == 0 ? " and the CA" : "");
	return 0;
}

int cli_ca_main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *verb = argv[1];
	static const char *const verbs[] = { "init", "issue", "renew", "revoke", "list", "crl", "token", "export-p12" };
	bool known = false;
	for (size_t i = 0; i < KZ_ARRAY_LEN(verbs); i++)
		known |= strcmp(verb, verbs[i]) == 0;
	if (!known) {
		fprintf(stderr, "kizuna ca: unknown command '%s'\n", verb);
		usage(stderr);
		return 2;
	}
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "data", required_argument, NULL, 'd' },
		{ "id", required_argument, NULL, 'i' },     { "lifetime", required_argument, NULL, 'l' },
		{ "out", required_argument, NULL, 'o' },    { "cert", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'K' },    { "reason", required_argument, NULL, 'r' },
		{ "ttl", required_argument, NULL, 't' },    { "trust-domain", required_argument, NULL, 'T' },
		{ "org", required_argument, NULL, 'O' },    { "help", no_argument, NULL, 'h' },
		{ "server", required_argument, NULL, 'S' }, { "password-file", required_argument, NULL, 'P' },
		{ "password-env", required_argument, NULL, 'E' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *data = NULL, *id = NULL, *out = NULL, *cert = NULL, *key = NULL, *reason = NULL;
	const char *td = NULL, *org = NULL, *server = NULL, *pw_file = NULL, *pw_env = NULL;
	uint32_t lifetime = 0, ttl = 0;
	int o;
	optind = 2;
	while ((o = getopt_long(argc, argv, "c:d:i:l:o:r:t:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config = optarg; break;
		case 'd': data = optarg; break;
		case 'i': id = optarg; break;
		case 'l':
			if (dur_arg("ca", "--lifetime", optarg, &lifetime))
				return 2;
			break;
		case 'o': out = optarg; break;
		case 'C': cert = optarg; break;
		case 'K': key = optarg; break;
		case 'r': reason = optarg; break;
		case 't':
			if (dur_arg("ca", "--ttl", optarg, &ttl))
				return 2;
			break;
		case 'T': td = optarg; break;
		case 'O': org = optarg; break;
		case 'S': server = optarg; break;
		case 'P': pw_file = optarg; break;
		case 'E': pw_env = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	const char *serial_arg = optind < argc ? argv[optind++] : NULL;
	if (optind < argc || (serial_arg && strcmp(verb, "revoke") != 0)) {
		fprintf(stderr, "kizuna ca %s: unexpected argument '%s'\n", verb, serial_arg ? serial_arg : argv[optind]);
		return 2;
	}
	struct node_config cfg;
	if (node_config_for_command(&cfg, config, data, stderr))
		return 1;
	if (td)
		snprintf(cfg.trust_domain, sizeof cfg.trust_domain, "%s", td);
	if (org)
		snprintf(cfg.org, sizeof cfg.org, "%s", org);
	node_config_finish(&cfg);
	char why[1024] = "";
	if (strcmp(verb, "init") != 0 && kz_data_dir_check(cfg.data_dir, why, sizeof why)) {
		fprintf(stderr, "kizuna ca %s: %s\n", verb, why);
		return 1;
	}
	if (strcmp(verb, "init") == 0) {
		mkdir(cfg.data_dir, 0755);
		int rc = kz_ca_create(cfg.ca_dir, cfg.trust_domain, cfg.org, cfg.ca_max_lifetime_s, why, sizeof why);
		if (rc < 0) {
			fprintf(stderr, "kizuna ca init: %s\n", why);
			return 1;
		}
		if (rc == 0) {
			fprintf(stderr, "kizuna ca init: %s/ca.pem exists; nothing changed\n", cfg.ca_dir);
			return 1;
		}
		printf("CA created in %s (trust domain %s):\n"
		       "  ca.pem ca.key          the CA (ECDSA P-256, 10 years); keep ca.key offline if you can\n"
		       "  server.pem server.key  the node's TLS certificate (localhost, 127.0.0.1, ::1)\n"
		       "  admin.pem admin.key    spiffe://%s/%s/user/admin\n"
		       "  crl.pem                the revocation list (empty)\n",
		       cfg.ca_dir, cfg.trust_domain, cfg.trust_domain, cfg.org);
		return 0;
	}
	if (strcmp(verb, "export-p12") == 0)
		return export_p12(&cfg, cert, key, out, pw_file, pw_env);
	struct kz_ca *ca;
	if (kz_ca_open(cfg.ca_dir, cfg.trust_domain, &ca, why, sizeof why)) {
		fprintf(stderr, "kizuna ca %s: %s\n", verb, why);
		return 1;
	}
	int rc = 0;
	bool issues = strcmp(verb, "issue") == 0 || strcmp(verb, "renew") == 0 || strcmp(verb, "token") == 0;
	if (lifetime == 0) /* the default, within the maximum */
		lifetime = cfg.ca_lifetime_s < cfg.ca_max_lifetime_s ? cfg.ca_lifetime_s : cfg.ca_max_lifetime_s;
	if (issues && lifetime > cfg.ca_max_lifetime_s) {
		fprintf(stderr, "kizuna ca %s: lifetime %u s is over ca.max_cert_lifetime (%u s)\n", verb, lifetime,
			cfg.ca_max_lifetime_s);
		kz_ca_close(ca);
		return 1;
	}
	char serial[KZ_SERIAL_HEX] = "";
	if (strcmp(verb, "issue") == 0) {
		char cp[1200], kp[1200];
		if (!id || (!out && (!cert || !key)) || (out && (cert || key))) {
			fprintf(stderr, "kizuna ca issue: give --id and either --out DIR or --cert FILE --key FILE\n");
			rc = 2;
			goto done;
		}
		if (out) {
			if (mkdir(out, 0700) && access(out, W_OK)) {
				fprintf(stderr, "kizuna ca issue: cannot create %s\n", out);
				rc = 1;
				goto done;
			}
			snprintf(cp, sizeof cp, "%s/cert.pem", out);
			snprintf(kp, sizeof kp, "%s/key.pem", out);
			cert = cp;
			key = kp;
		}
		if (kz_ca_issue(ca, id, lifetime, server, cert, key, serial, why, sizeof why)) {
			fprintf(stderr, "kizuna ca issue: %s\n", why);
			rc = 1;
			goto done;
		}
		printf("issued %s\n  serial %s, valid %u s\n  certificate %s\n  key %s (0600)\n", id, serial, lifetime, cert,
		       key);
	} else if (strcmp(verb, "renew") == 0) {
		if (!cert) {
			fprintf(stderr, "kizuna ca renew: give --cert FILE (the certificate to renew)\n");
			rc = 2;
			goto done;
		}
		const char *dst = out ? out : cert;
		if (kz_ca_renew(ca, cert, lifetime, dst, serial, why, sizeof why)) {
			fprintf(stderr, "kizuna ca renew: %s\n", why);
			rc = 1;
			goto done;
		}
		printf("renewed %s: new serial %s, valid %u s, written to %s (same key)\n", cert, serial, lifetime, dst);
	} else if (strcmp(verb, "revoke") == 0) {
		if (!serial_arg == !cert) {
			fprintf(stderr, "kizuna ca revoke: give a SERIAL or --cert FILE\n");
			rc = 2;
			goto done;
		}
		if (cert && serial_of_file(cert, serial)) {
			rc = 1;
			goto done;
		}
		int r = kz_ca_revoke(ca, serial_arg ? serial_arg : serial, reason, why, sizeof why);
		if (r) {
			fprintf(stderr, "kizuna ca revoke: %s\n", why);
			rc = r == KZ_EINVAL ? 2 : 1;
			goto done;
		}
		printf("revoked %s (%s); %s/crl.pem rewritten. A node using it refuses the certificate from now on "
		       "and closes its open connections within tls.cert_check_ms.\n",
		       serial_arg ? serial_arg : serial, why, cfg.ca_dir);
	} else if (strcmp(verb, "list") == 0) {
		struct list_ctx l = { id, (int64_t)(kz_now_wall_ns() / 1000000000u), 0 };
		if (kz_ca_list(ca, print_entry, &l, why, sizeof why)) {
			fprintf(stderr, "kizuna ca list: %s\n", why);
			rc = 1;
		}
	} else if (strcmp(verb, "crl") == 0) {
		if (kz_ca_write_crl(ca, why, sizeof why)) {
			fprintf(stderr, "kizuna ca crl: %s\n", why);
			rc = 1;
			goto done;
		}
		char p[1200];
		snprintf(p, sizeof p, "%s/crl.pem", cfg.ca_dir);
		FILE *f = fopen(p, "r");
		char buf[4096];
		size_t n;
		while (f && (n = fread(buf, 1, sizeof buf, f)) > 0)
			fwrite(buf, 1, n, stdout);
		if (f)
			fclose(f);
	} else { /* token */
		if (!id) {
			fprintf(stderr, "kizuna ca token: give --id SPIFFE-ID (the identity the token enrols)\n");
			rc = 2;
			goto done;
		}
		char tok[KZ_TOKEN_LEN];
		if (ttl == 0)
			ttl = cfg.token_ttl_s;
		if (kz_ca_token(ca, id, ttl, lifetime, tok, why, sizeof why)) {
			fprintf(stderr, "kizuna ca token: %s\n", why);
			rc = 1;
			goto done;
		}
		char host[256];
		int port;
		(void)node_config_split_addr(cfg.mqtt_listen, host, sizeof host, &port);
		printf("%s\n", tok);
		fprintf(stderr,
			"token for %s: single use, valid %u s; the certificate will be valid %u s.\n"
			"On the enrolling machine, with the CA certificate %s/ca.pem copied there:\n"
			"  kizuna enroll --host %s --port %d --cafile ca.pem --token %s --out DIR\n",
			id, ttl, lifetime, cfg.ca_dir, host, port, tok);
	}
done:
	kz_ca_close(ca);
	return rc;
}

static int serial_of_file(const char *path, char out[KZ_SERIAL_HEX])
{
	char why[512];
	if (kz_cert_file_serial(path, out, why, sizeof why)) {
		fprintf(stderr, "kizuna ca revoke: %s\n", why);
		return -1;
	}
	return 0;
}

int cli_enroll_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'h' },  { "port", required_argument, NULL, 'p' },
		{ "cafile", required_argument, NULL, 'a' }, { "token", required_argument, NULL, 't' },
		{ "out", required_argument, NULL, 'o' },   { "help", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 },
	};
	const char *host = "localhost", *ca = NULL, *token = NULL, *out = NULL;
	int port = 8883, o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h:p:t:o:", opts, NULL)) != -1) {
		switch (o) {
		case 'h': host = optarg; break;
		case 'p': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 65535) {
				fprintf(stderr, "kizuna enroll: bad port '%s'\n", optarg);
				return 2;
			}
			port = (int)v;
			break;
		}
		case 'a': ca = optarg; break;
		case 't': token = optarg; break;
		case 'o': out = optarg; break;
		case 'H': cli_help("enroll"); return 0;
		default: cli_help("enroll"); return 2;
		}
	}
	if (optind < argc || !ca || !token || !out) {
		fprintf(stderr, "kizuna enroll: give --cafile FILE --token TOKEN --out DIR\n");
		return 2;
	}
	char why[1024], id[2100];
	int rc = kz_enroll_client(host, port, ca, token, out, id, sizeof id, why, sizeof why);
	if (rc) {
		fprintf(stderr, "kizuna enroll: %s\n", why);
		return 1;
	}
	printf("enrolled as %s\n  %s/cert.pem  %s/key.pem (0600, generated here)  %s/ca.pem\n"
	       "  kizuna sub --host %s --port %d --cafile %s/ca.pem --cert %s/cert.pem --key %s/key.pem -t '#'\n",
	       id, out, out, out, host, port, out, out, out);
	return 0;
}
