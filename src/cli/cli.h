/* cli.h — the `kizuna` command table. */
#ifndef CLI_H
#define CLI_H
void cli_help(const char *command);
int cli_pub_main(int argc, char **argv);
int cli_sub_main(int argc, char **argv);
int cli_bench_main(int argc, char **argv);
int cli_bench_store_main(int argc, char **argv);
int cli_audit_main(int argc, char **argv);
int cli_cluster_main(int argc, char **argv);
struct node_config;
struct kz_cluster_config;
/* How a command reaches the cluster, from the node's configuration (cluster status, audit verify). */
void cli_cluster_config(const struct node_config *cfg, const char *state_path, struct kz_cluster_config *cc);
int cli_policy_main(int argc, char **argv);
int cli_bench_policy_main(int argc, char **argv);
int cli_bench_entity_main(int argc, char **argv);
int cli_ca_main(int argc, char **argv);
int cli_bench_pqc_main(int argc, char **argv);
int cli_bench_handshake_main(int argc, char **argv);
int cli_enroll_main(int argc, char **argv);
int cli_stix_main(int argc, char **argv);
int cli_bench_taxii_main(int argc, char **argv);
int cli_taxii_main(int argc, char **argv);
int cli_task_main(int argc, char **argv);
int cli_agent_main(int argc, char **argv);
int cli_adapter_main(int argc, char **argv);
int cli_detect_main(int argc, char **argv);
int cli_adapter_replay(int argc, char **argv);
int cli_bench_adapter_main(int argc, char **argv);
int cli_bench_audit_main(int argc, char **argv);
#endif
