/* cli_cluster.c — `kizuna cluster status`: the cluster as this node's configuration sees it
 * (docs/CLUSTER.md). */
#include "cli/cli.h"
#include "cluster/cluster.h"
#include "node/node_config.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void cli_cluster_config(const struct node_config *cfg, const char *state_path, struct kz_cluster_config *cc)
{
	*cc = (struct kz_cluster_config){ .servers = cfg->cluster_nats, .ca_file = cfg->tls_ca,
					  .cert_file = cfg->cluster_cert, .key_file = cfg->cluster_key,
					  .node_id = cfg->node_id, .state_path = state_path,
					  .publish_timeout_ms = cfg->cluster_publish_timeout_ms, .window = 1 };
}

int cli_cluster_main(int argc, char **argv)
{
	static const struct option opts[] = { { "config", required_argument, NULL, 'c' },
					      { "data", required_argument, NULL, 'd' },
					      { "records", no_argument, NULL, 'r' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	const char *config = NULL, *data = NULL;
	bool records = false;
	int o;
	optind = 1;
	if (argc < 2 || strcmp(argv[1], "status") != 0) {
		fprintf(stderr, "usage: kizuna cluster status [--config FILE] [--data DIR] [--records]\n");
		return 2;
	}
	argc--, argv++;
	while ((o = getopt_long(argc, argv, "c:d:rh", opts, NULL)) != -1) {
		switch (o) {
		case 'r': records = true; break;
		case 'c': config = optarg; break;
		case 'd': data = optarg; break;
		case 'h': printf("usage: kizuna cluster status [--config FILE] [--data DIR] [--records]\n"); return 0;
		default: return 2;
		}
	}
	struct node_config cfg;
	if (node_config_for_command(&cfg, config, data, stderr))
		return 1;
	node_config_finish(&cfg);
	if (!cfg.cluster_nats[0]) {
		fprintf(stderr, "kizuna cluster: this node is not in a cluster (cluster.nats is empty)\n");
		return 1;
	}
	char state[1100], why[512] = "";
	snprintf(state, sizeof state, "%s/cluster.state", cfg.data_dir);
	struct kz_cluster_config cc;
	cli_cluster_config(&cfg, state, &cc);
	if (kz_cluster_print_status_ex(&cc, records, stdout, why, sizeof why)) {
		fprintf(stderr, "kizuna cluster: %s\n", why);
		return 1;
	}
	return 0;
}
