/* node_config.h — the node's configuration: one table of directives drives parsing,
 * validation (`kizuna serve --check`), `kizuna help config` and the man page. */
#ifndef NODE_CONFIG_H
#define NODE_CONFIG_H

#include "base/kz_log.h"
#include "mqtt/mqtt_broker.h"

#include <stdio.h>

#define NODE_MAX_RULES 64

struct node_config {
	char data_dir[1024];
	char mqtt_listen[256];    /* host:port */
	char https_listen[256];   /* host:port of the HTTPS API */
	char https_console_dir[1024]; /* the console's files: auto, none or a directory */
	uint32_t https_enabled, https_max_body, https_max_anon_body, https_req_timeout_ms, https_idle_timeout_ms, mqtt_websocket;
	char taxii_collections[1100]; /* empty = DIR/taxii-collections.json */
	uint32_t taxii_max_page, taxii_default_page, taxii_max_post, taxii_max_scan, taxii_max_statuses;
	uint32_t entity_max_entities, entity_default_stale_ms, entity_default_expiry_ms, entity_removed_keep_ms,
		 entity_max_interned, entity_max_page, entity_default_page, entity_stream_ring, entity_max_streams,
		 entity_stream_heartbeat_ms, entity_stream_interval_ms;
	uint32_t task_max_tasks, task_max_agents, task_max_kinds, task_ended_keep_ms, task_max_page;
	char adapter_ais_udp[256], adapter_ais_tcp[256], adapter_ais_identity[512], adapter_ais_label[1025];
	uint32_t adapter_ais_max_vessels, adapter_ais_reassembly_ms, adapter_reconnect_max_ms;
	uint64_t adapter_max_pending_bytes;
	uint64_t mem_keep_free;
	char adapter_adsb_avr[256], adapter_adsb_beast[256], adapter_adsb_sbs[256], adapter_adsb_identity[512],
		adapter_adsb_label[1025], adapter_adsb_reference[64];
	uint32_t adapter_adsb_max_aircraft;
	char tak_listen[256];
	uint32_t tak_max_connections, tak_max_event_bytes, tak_push_interval_ms, tak_max_output_bytes, tak_protocol;
	uint32_t taxii_max_status_bytes;
	uint32_t detect_enabled, detect_flush_ms, detect_max_indicators, detect_max_sightings, detect_max_topics,
		 detect_resume, detect_resume_max, detect_all_nodes, detect_max_headers;
	char detect_indicators[1100], detect_collection[64], detect_topics[1100], detect_files[4096],
		detect_warninglists[4096], detect_sighting_topic[256], detect_identity[512], detect_file_label[1025],
		detect_intel[4096], detect_intel_label[1025];
	char tls_ca[1100], tls_cert[1100], tls_key[1100]; /* empty = DIR/pki/... */
	char tls_groups[256];
	uint32_t tls_require_pq;  /* 1: only X25519MLKEM768 */
	char trust_domain[256];
	char org[128];
	unsigned threads;         /* 0 = one per core */
	enum kz_log_level log_level;
	uint32_t tick_ms;
	char node_id[64];         /* empty = the host name */
	uint32_t read_budget, write_backlog; /* net flow control, bytes */
	uint32_t audit_ck_entries, audit_ck_ms;
	uint32_t audit_window_ms, audit_max_files;
	uint64_t audit_max_file_bytes;
	char policy_file[1024], policy_registry[1024]; /* empty: no policy */
	char policy_signing_key[1024]; /* ML-DSA-65 public key (hex); empty: signatures not required */
	uint32_t policy_summary_ms;
	uint32_t policy_open;     /* 1: without policy.file every authenticated identity may do everything (tests) */
	char cluster_nats[1024];  /* empty: a single node (docs/CLUSTER.md) */
	char cluster_cert[1100], cluster_key[1100], cluster_on_quorum_loss[16];
	uint32_t cluster_replicas, cluster_publish_timeout_ms, cluster_publish_window, cluster_session_margin_ms,
		 cluster_gap_timeout_ms, cluster_bridge_ms, cluster_bridge_adopt_ms, cluster_failover_order_ms, cluster_node_dead_ms, cluster_session_tombstone_ms,
		 cluster_consumer_stall_ms, cluster_consumer_lost_ms, cluster_consumer_scan_ms, cluster_batch_records, cluster_batch_bytes;
	char tls_crl[1100];       /* empty = DIR/pki/crl.pem */
	uint32_t cert_check_ms;   /* revoked/expired certificates' connections closed within this */
	uint64_t health_index_lag; /* /healthz: index degraded beyond this many records behind */
	struct kz_idlimit_rule id_limits[NODE_MAX_RULES]; /* limits.identity lines */
	size_t n_id_limits;
	uint32_t id_limits_max;   /* identities tracked */
	char ca_dir[1100];        /* empty = DIR/pki */
	uint32_t ca_lifetime_s, ca_max_lifetime_s, token_ttl_s;
	uint32_t enroll_enabled, enroll_max_bytes, enroll_timeout_ms, enroll_max_conns;
	struct node_store {
		enum kz_fsync_mode fsync;
		uint32_t fsync_interval_ms;
		uint64_t segment_bytes;
		uint32_t retention_interval_ms;
		struct kz_retention_rule rules[NODE_MAX_RULES];
		size_t n_rules;
	} store;
	struct mqtt_limits limits;
};

void node_config_default(struct node_config *cfg);
/* Reads FILE into cfg. Every error is reported to err as "file:line: message"; returns the
 * number of errors (0 = valid). */
int node_config_load(struct node_config *cfg, const char *path, FILE *err);
/* The defaults, then FILE when config is not NULL (errors to err), then --data DIR when data
 * is not NULL: what every command taking --config and --data does first. 0, or 1 when the
 * file has errors. */
int node_config_for_command(struct node_config *cfg, const char *config, const char *data, FILE *err);
/* Fills the TLS paths that are empty from data_dir, and the policy from the development
 * policy DIR/pki/dev.policy + dev.identities when neither policy.file nor policy.open is set
 * and those files exist. */
void node_config_finish(struct node_config *cfg);
/* Writes the development policy and registry beside the development PKI (DIR/pki), allowing
 * the organisation's identities listed in the registry (the admin): made with the PKI on a
 * node's first start (docs/POLICY.md "Deny by default"). 0, or -1 with *why. */
int node_dev_policy_create(const struct node_config *cfg, char *why, size_t why_len);
/* The policy in force when none is configured and policy.open is 0: it allows nothing. */
extern const char node_deny_all_policy[];
/* Parses a retention rule: FILTER [max_age=DUR] [max_bytes=SIZE] [keep_last=N] [qos0=store|skip].
 * DUR: a number with s, m, h or d; SIZE: a number with K, M, G or T (powers of 1024). */
int node_config_parse_rule(const char *text, struct kz_retention_rule *rule, const char **why);
/* Splits host:port ("[::1]:8883" too). */
int node_config_split_addr(const char *addr, char *host, size_t host_len, int *port);
/* kz_policy_load, after checking the ML-DSA-65 signatures of both files when
 * policy.signing_key is set (a missing or bad signature is one error, printed to err). */
struct kz_policy;
int node_policy_load(const struct node_config *cfg, unsigned gen, struct kz_policy **out, FILE *err,
		     unsigned long long *seq_out);
/* Development mode: the node runs on the development PKI it made itself (the default tls.ca
 * with the CA key beside it). Outside it, a policy.file must be signed. */
bool node_dev_mode(const struct node_config *cfg);
/* The signed policy's sequence high-water mark in DIR/policy.seq (0: none yet). */
unsigned long long node_policy_seq(const struct node_config *cfg);
int node_policy_seq_store(const struct node_config *cfg, unsigned long long seq);
/* Prints every directive with its default and documentation. */
void node_config_print_help(FILE *out, int as_man);

/* The five-minute tour `kizuna serve` prints once it serves (created: it made the PKI). */
void node_print_tour(const struct node_config *cfg, const char *host, int port, int https_port, int created);

#endif
