/* cli_query.c — `kizuna query`: records from the index, as JSON or NDJSON. */
#include "trust/access.h"
#include "cli/cli_store.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"
#include "base/kz_time.h"
#include "mqtt/mqtt_topic.h"
#include "node/node_config.h"
#include "store/store.h"
#include "trust/audit.h"
#include "trust/policy.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_RECORD (256u << 20)
#define AUDIT_DENIALS_ONE_BY_ONE 100 /* then one summary entry with the count */

static void usage(FILE *f)
{
	fprintf(f, "usage: kizuna query [--data DIR] [--topic FILTER] [--since TIME] [--until TIME]\n"
		   "                    [--origin ID] [--node NODE] [--content-type TYPE] [--limit N]\n"
		   "                    [--format json|ndjson]\n"
		   "                    [--as SPIFFE-ID (--config FILE | --policy FILE --registry FILE)]\n");
}

struct out {
	bool ndjson;
	uint64_t n, limit, withheld;
	const struct kz_policy *pol; /* with --as: every result passes the decision point */
	const struct kz_subject *as;
	const char *as_id;
	char reason_tail[64];        /* " (kizuna query, operator uid N)" */
};

static int row(void *ctx, uint64_t seq, const struct kz_record *r)
{
	struct out *o = ctx;
	if (o->pol) {
		struct kz_label l;
		char canon[KZ_LABEL_MAX_LEN + 1], why[160];
		size_t cn;
		const char *w;
		const struct kz_label *lp = &o->pol->default_label; /* unlabelled: the default */
		snprintf(canon, sizeof canon, "(unlabelled: the policy's default label)");
		if (r->label.len) {
			lp = kz_label_parse(o->pol, (const char *)r->label.p, r->label.len, &l, canon, &cn, why, sizeof why)
				     ? NULL
				     : &l;
		}
		struct kz_record_facts f = { .topic = r->topic.p, .topic_len = r->topic.len, .label = lp };
		if (!kz_may_read(o->pol, o->as, KZ_PATH_QUERY, &f, &w)) {
			/* the decision is audited: the first ones one by one, the rest counted */
			if (o->withheld < AUDIT_DENIALS_ONE_BY_ONE) {
				char id[37], reason[300];
				kz_uuid_format(r->id, id);
				snprintf(reason, sizeof reason, "withheld: %s%s", w, o->reason_tail);
				kz_audit(&(struct kz_audit_entry){ .subject = o->as_id, .action = "query", .resource = id,
								  .label = lp ? canon : NULL, .allow = false, .reason = reason,
								  .policy = o->pol->version });
			}
			o->withheld++;
			return 0;
		}
	}
	if (o->limit && o->n == o->limit)
		return 1;
	if (!o->ndjson)
		fputs(o->n ? ",\n" : "[\n", stdout);
	cli_record_json(stdout, seq, r);
	if (o->ndjson)
		fputc('\n', stdout);
	o->n++;
	return 0;
}

static int count_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	(void)seq, (void)body, (void)n, (void)pos;
	(*(uint64_t *)ctx)++;
	return 0;
}

static int time_arg(const char *opt, const char *v, uint64_t *ns)
{
	if (kz_time_parse(v, ns)) {
		fprintf(stderr, "kizuna query: %s: '%s' is not an RFC 3339 time such as 2026-11-22T08:00:00Z\n",
			opt, v);
		return -1;
	}
	return 0;
}

int cli_query_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", required_argument, NULL, 'd' },	  { "topic", required_argument, NULL, 't' },
		{ "since", required_argument, NULL, 's' },	  { "until", required_argument, NULL, 'u' },
		{ "origin", required_argument, NULL, 'o' },	  { "node", required_argument, NULL, 'N' },
		{ "content-type", required_argument, NULL, 'T' }, { "limit", required_argument, NULL, 'l' },
		{ "format", required_argument, NULL, 'f' },	  { "help", no_argument, NULL, 'h' },
		{ "as", required_argument, NULL, 'A' },		  { "config", required_argument, NULL, 'c' },
		{ "policy", required_argument, NULL, 'P' },	  { "registry", required_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	const char *data = "./var", *as = NULL, *config = NULL, *pol = NULL, *reg = NULL;
	struct kz_query q = { .limit = 1000 };
	struct out o = { 0 };
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "d:t:s:u:o:l:f:h", opts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'd': data = optarg; break;
		case 't': q.filter = optarg; break;
		case 's': if (time_arg("--since", optarg, &q.since_ns)) return 2; break;
		case 'u': if (time_arg("--until", optarg, &q.until_ns)) return 2; break;
		case 'o': q.origin = optarg; break;
		case 'N': q.origin_node = optarg; break;
		case 'T': q.content_type = optarg; break;
		case 'l':
			q.limit = strtoull(optarg, &end, 10);
			if (*end || !*optarg || optarg[0] == '-') {
				fprintf(stderr, "kizuna query: --limit: expected a number (0 = no limit)\n");
				return 2;
			}
			break;
		case 'f':
			if (strcmp(optarg, "json") && strcmp(optarg, "ndjson")) {
				fprintf(stderr, "kizuna query: --format: expected json or ndjson\n");
				return 2;
			}
			o.ndjson = !strcmp(optarg, "ndjson");
			break;
		case 'A': as = optarg; break;
		case 'c': config = optarg; break;
		case 'P': pol = optarg; break;
		case 'R': reg = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kizuna query: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (q.filter) { /* the rules of a SUBSCRIBE's filter (MQTT 5.0 4.7.1) */
		const struct mqtt_topic_limits lim = { 65535, 1024 };
		const char *fw;
		if (mqtt_topic_filter_check((const uint8_t *)q.filter, strlen(q.filter), &lim, &fw)) {
			fprintf(stderr, "kizuna query: --topic '%s': %s\n", q.filter, fw);
			return 2;
		}
	}
	if (q.since_ns && q.until_ns && q.since_ns > q.until_ns) {
		fprintf(stderr, "kizuna query: --since is after --until\n");
		return 2;
	}
	char logdir[4200], path[4200], why[1024] = "";
	if (kz_data_dir_check(data, why, sizeof why)) {
		fprintf(stderr, "kizuna query: %s\n", why);
		return 1;
	}
	snprintf(logdir, sizeof logdir, "%s/log", data);
	snprintf(path, sizeof path, "%s/index.db", data);
	if (access(path, F_OK) != 0) {
		fprintf(stderr, "kizuna query: no index at %s (start the node, or run `kizuna store reindex`)\n",
			path);
		return 1;
	}
	struct kz_policy *policy = NULL;
	struct kz_subject subject;
	if (as || config || pol || reg) {
		struct node_config cfg;
		if (node_config_for_command(&cfg, config, data, stderr))
			return 1;
		if (pol)
			snprintf(cfg.policy_file, sizeof cfg.policy_file, "%s", pol);
		if (reg)
			snprintf(cfg.policy_registry, sizeof cfg.policy_registry, "%s", reg);
		node_config_finish(&cfg); /* the development policy of DIR/pki, when that is the node's */
		if (!as || !cfg.policy_file[0] || !cfg.policy_registry[0]) {
			fprintf(stderr, "kizuna query: --as SPIFFE-ID goes with a policy: --config FILE (policy.file, "
					"policy.registry) or --policy FILE --registry FILE\n");
			return 2;
		}
		kz_hash_seed();
		if (kz_policy_load(cfg.policy_file, cfg.policy_registry, 1, &policy, stderr))
			return 1;
		kz_subject_init(policy, as, &subject);
		o.pol = policy;
		o.as = &subject;
		o.as_id = as;
		snprintf(o.reason_tail, sizeof o.reason_tail, " (kizuna query, operator uid %u)", (unsigned)getuid());
		/* Queries on behalf of a subject are decisions: into the node's audit log (shared
		 * with a running node, docs/AUDIT.md). */
		char auditdir[4200];
		snprintf(auditdir, sizeof auditdir, "%s/audit", data);
		if (kz_audit_open(auditdir, cfg.audit_ck_entries, cfg.audit_ck_ms, &kz_audit_log, why, sizeof why)) {
			fprintf(stderr, "kizuna query: audit log: %s\n", why);
			kz_policy_free(policy);
			return 1;
		}
		kz_audit_set_limits(kz_audit_log, cfg.audit_window_ms, cfg.audit_max_file_bytes, cfg.audit_max_files);
	}
	if (policy) {
		o.limit = q.limit;
		q.limit = 0; /* the limit counts what the subject may see */
	}
	/* Read only: the node keeps the index current; a stopped node's index may lack the
	 * records written after its last commit, which we count and report. */
	struct kz_index_config icfg = { path, logdir, MAX_RECORD, NULL, 0, true };
	struct kz_index *ix;
	int rc = kz_index_open(&icfg, &ix, why, sizeof why);
	if (rc == KZ_EMALFORMED) {
		fprintf(stderr, "kizuna query: %s: the index is damaged; run `kizuna store reindex` (or start the node, "
				"which rebuilds it)\n", why);
		kz_policy_free(policy);
		return 1;
	}
	uint64_t hw;
	char mismatch[400];
	if (!rc && kz_index_check(ix, KZ_INDEX_LOG_END_NOW, &hw, mismatch, sizeof mismatch)) {
		/* answering from it would give wrong records, or miss acknowledged ones */
		fprintf(stderr, "kizuna query: the index %s does not match the record log: %s; run `kizuna store reindex` "
				"(or start the node, which rebuilds it)\n", path, mismatch);
		kz_index_close(ix);
		kz_policy_free(policy);
		return 1;
	}
	if (!rc) {
		rc = kz_index_query(ix, &q, row, &o, why, sizeof why);
		if (!o.ndjson)
			fputs(o.n ? "\n]\n" : "[]\n", stdout);
	}
	uint64_t behind = 0;
	if (!rc && kz_reclog_scan(logdir, kz_index_through(ix) + 1, NULL, MAX_RECORD, count_cb, &behind, why,
			       sizeof why) == KZ_OK && behind)
		fprintf(stderr, "kizuna query: %" PRIu64 " newer records in the log are not indexed yet\n", behind);
	kz_index_close(ix);
	if (policy && o.withheld)
		fprintf(stderr, "kizuna query: %" PRIu64 " matching records withheld: %s may not read them "
				"(their topic or their label)\n",
			o.withheld, as);
	if (policy) {
		char res[600], reason[300];
		snprintf(res, sizeof res, "topic=%s since=%" PRIu64 " until=%" PRIu64 " origin=%s limit=%" PRIu64,
			 q.filter ? q.filter : "#", q.since_ns, q.until_ns, q.origin ? q.origin : "*", o.limit);
		if (o.withheld > AUDIT_DENIALS_ONE_BY_ONE) {
			snprintf(reason, sizeof reason, "%" PRIu64 " more records withheld (summary)%s",
				 o.withheld - AUDIT_DENIALS_ONE_BY_ONE, o.reason_tail);
			kz_audit(&(struct kz_audit_entry){ .subject = as, .action = "query", .resource = res, .allow = false,
							  .reason = reason, .policy = policy->version,
							  .count = o.withheld - AUDIT_DENIALS_ONE_BY_ONE });
		}
		snprintf(reason, sizeof reason, "%" PRIu64 " records returned%s", o.n, o.reason_tail);
		kz_audit(&(struct kz_audit_entry){ .subject = as, .action = "query", .resource = res, .allow = true,
						  .reason = reason, .policy = policy->version, .count = o.n });
		kz_audit_close(kz_audit_log);
		kz_audit_log = NULL;
	}
	kz_policy_free(policy);
	if (rc == 1)
		rc = 0; /* the limit was reached */
	if (rc) {
		fprintf(stderr, "kizuna query: %s\n", why);
		return 1;
	}
	return 0;
}
