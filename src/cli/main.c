/* main.c — the `kizuna` binary: one table of commands drives dispatch and help. */
#include "cli/cli.h"
#include "cli/cli_client.h"
#include "node/node_config.h"
#include "node/node_serve.h"
#include "cli/cli_store.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static int help_main(int argc, char **argv);
static int version_main(int argc, char **argv)
{
	printf("kizuna %s\n", KZ_VERSION);
	return 0;
}

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
	const char *help;
};

static const struct command commands[] = {
	{ "serve", node_serve_main, "run a node",
	  "usage: kizuna serve [--config FILE] [--data DIR] [--check]\n\n"
	  "Runs a node: MQTT 3.1.1/5.0 over TLS 1.3 with client certificates (default port 8883),\n"
	  "key exchange X25519MLKEM768 first, X25519 second (docs/PQC.md), and the HTTPS API\n"
	  "(default 127.0.0.1:8443, HTTP/1.1 and HTTP/2): /healthz, /metrics and TAXII 2.1 at\n"
	  "/taxii2/ (docs/HTTP.md, docs/TAXII.md).\n"
	  "On first start with an empty data directory it creates a development PKI in DIR/pki\n"
	  "(a CA with server and admin certificates, ECDSA P-256; docs/CA.md) and prints\n"
	  "ready-to-paste client lines.\n\n"
	  "  -c, --config FILE   configuration file (see `kizuna help config`)\n"
	  "  -d, --data DIR      data directory (default ./var; overrides data_dir)\n"
	  "  -k, --check         validate the configuration, print errors as file:line: message,\n"
	  "                      exit 0 when valid, 1 when not\n\n"
	  "SIGTERM or SIGINT: stop accepting, send MQTT 5 clients DISCONNECT 0x8B (Server shutting\n"
	  "down), close every connection, exit 0.\n" },
	{ "pub", cli_pub_main, "publish a message",
	  "usage: kizuna pub -t TOPIC (-m MESSAGE | -f FILE|-) [options]\n\n"
	  "  -t, --topic T       topic name\n"
	  "  -m, --message M     payload\n"
	  "  -f, --file F        payload from a file, - for standard input\n"
	  "  -r, --retain        set the retain flag (an empty payload deletes a retained message)\n"
	  "  -n, --repeat N      publish N times\n" CLI_COMMON_HELP
	  "\nExits 0 when every message was accepted (QoS 1/2: acknowledged), 1 otherwise.\n" },
	{ "sub", cli_sub_main, "subscribe and print messages",
	  "usage: kizuna sub -t FILTER [-t FILTER ...] [options]\n\n"
	  "  -t, --topic F       topic filter (+ and # wildcards, $share/GROUP/FILTER)\n"
	  "  -v, --verbose       print the topic before each payload\n"
	  "  -C, --count N       exit after N messages\n"
	  "  -c                  keep the session (clean start off)\n"
	  "  -x, --session-expiry S  session expiry interval in seconds (MQTT 5)\n" CLI_COMMON_HELP },
	{ "bench", cli_bench_main, "MQTT load generator",
	  "usage: kizuna bench mqtt [options]   (see `kizuna bench mqtt --help`)\n"
	  "       kizuna bench fill [--data DIR] [--records N] [--topics T]\n"
	  "       kizuna bench query [--data DIR] [--queries Q] [--topics T] [--rows W]\n"
	  "       kizuna bench policy --policy FILE --registry FILE [--checks N]\n"
	  "       kizuna bench pqc [--iterations N]   (ML-KEM-768 operations)\n"
	  "       kizuna bench handshake [--groups G] [--threads T] [--duration S] [--broker-pid P]\n"
	  "       kizuna bench taxii --collection ID --bundle FILE... [--url URL] [--objects N]\n"
	  "                    [--batch B] [--connections C] [--readers R] [--pages P] [--skip-import]\n"
	  "                    (TAXII import rate and page latency: bench/taxii.sh)\n"
	  "       kizuna bench entities [--entities N] [--updates U]\n"
	  "                    (entity picture: memory, updates/s, snapshot: bench/entities.sh)\n"
	  "       kizuna bench adapters [--shared DIR] [--messages N]\n"
	  "                    (AIS and Mode S decode rates on one core: bench/adapters.sh)\n"
	  "       kizuna bench audit [--data DIR] [--entries N] [--max-file-mb M] [--max-files F]\n"
	  "                    (an audit log of N entries by the node's writer: bench/audit.sh)\n" },
	{ "store", cli_store_main, "verify, repair, dump or reindex the record log",
	  "usage: kizuna store (verify | repair | dump | reindex) [--data DIR] [--from SEQ]\n\n"
	  "Works on DIR/log (default ./var/log). verify and dump read, and work while the node\n"
	  "runs; repair and reindex write, and refuse while a node holds DIR/lock.\n\n"
	  "  verify   check every frame's CRC32C and every record; exit 1 on damage, naming the\n"
	  "           segment file and byte offset\n"
	  "  repair   move each damaged range to DIR/log/quarantine/ and report it: offsets, bytes\n"
	  "           and the sequence numbers of the records lost\n"
	  "  dump     print the records as JSON lines (seq, id, time, topic, origin, payload)\n"
	  "  reindex  rebuild DIR/index.db from the log alone (the node re-derives retention\n"
	  "           rules on its next start)\n"
	  "  --from SEQ  start at this sequence number (verify, dump)\n" },
	{ "query", cli_query_main, "query the stored records",
	  "usage: kizuna query [--data DIR] [--topic FILTER] [--since TIME] [--until TIME]\n"
	  "                    [--origin ID] [--node NODE] [--content-type TYPE] [--limit N]\n"
	  "                    [--format json|ndjson]\n"
	  "                    [--as SPIFFE-ID (--config FILE | --policy FILE --registry FILE)]\n\n"
	  "Selects records through the index (DIR/index.db) and prints them from the log, in\n"
	  "accept-time order. Works while the node runs (read only).\n\n"
	  "  -t, --topic F        MQTT topic filter (+ and # wildcards)\n"
	  "  -s, --since TIME     accepted at or after TIME (RFC 3339, e.g. 2026-11-22T08:00:00Z)\n"
	  "  -u, --until TIME     accepted at or before TIME\n"
	  "  -o, --origin ID      published by this identity (SPIFFE ID)\n"
	  "      --node NODE      accepted by this node\n"
	  "      --content-type T with this content type\n"
	  "  -l, --limit N        at most N records (default 1000; 0 = all)\n"
	  "  -f, --format F       json (one array, default) or ndjson (one object per line)\n"
	  "      --as ID          only what subject ID may read under the policy (docs/POLICY.md);\n"
	  "                       the limit counts those; every decision goes to DIR/audit\n\n"
	  "Each record: seq, id, time, topic, qos, retain, precedence, origin_node, origin_id,\n"
	  "label, content_type, expiry, and payload (UTF-8) or payload_base64.\n"
	  "Exit 0 (also when nothing matches), 1 on an error, 2 on a usage error.\n" },
	{ "cluster", cli_cluster_main, "the cluster's state as this node sees it",
	  "usage: kizuna cluster status [--config FILE] [--data DIR] [--records]\n\n"
	  "Connects to the NATS servers of cluster.nats with the node's certificate (cluster.cert,\n"
	  "cluster.key) and prints, one \"key: value\" per line: the stream KZ_RECORDS (messages,\n"
	  "each one record or a batch of several; bytes, sequences), its leader and replicas (current, catching up or offline, and how far\n"
	  "behind), the bridge's stream KZ_BRIDGE (messages, leader), how many of this node's\n"
	  "records the stream holds, the watermark the node saved\n"
	  "(DIR/cluster.state) and how many records it will publish again, its follower (its consumer,\n"
	  "the server it is on, its lag, and earlier consumers still to delete), how far it has\n"
	  "taken each other node's records, and each other node's last record on KZ_BRIDGE\n"
	  "(\"bridged by\") and whether this node has taken all up to it (docs/CLUSTER.md).\n"
	  "--records also reads every message of this node in the stream (headers only) and prints\n"
	  "how many of its records are stored once, more than once, or missing below its last, and\n"
	  "the most records one message holds (cluster.batch_records).\n"
	  "Exit 0, 1 when the node is not in a cluster, NATS cannot be reached or --records could not\n"
	  "read all of this node's messages, 2 on a usage error.\n" },
	{ "audit", cli_audit_main, "verify, show or reset the audit log",
	  "usage: kizuna audit verify [--data DIR]\n"
	  "       kizuna audit verify --cluster NODE [--config FILE] [--data DIR]\n"
	  "       kizuna audit show [--data DIR] [--subject ID] [--action A] [--decision allow|deny]\n"
	  "                         [--since TIME] [--until TIME]\n"
	  "       kizuna audit reset [--data DIR] --reason TEXT\n\n"
	  "The node records its decisions (TLS handshakes, CONNECT, SUBSCRIBE, refused PUBLISH,\n"
	  "denied deliveries, summaries of allowed ones) in DIR/audit/audit.log: hash-chained JSON\n"
	  "lines with Ed25519 and ML-DSA-65 signed checkpoints (docs/AUDIT.md).\n\n"
	  "  verify   recompute the chain, check every checkpoint against DIR/audit/audit.pub and\n"
	  "           the last one against DIR/audit/head; exit 0 when intact, 1 naming the first\n"
	  "           modified, removed, reordered or inserted entry, or the cut-off end, 3 when\n"
	  "           intact but incomplete (a gap entry: decisions the node could not write while\n"
	  "           the log could not be written; or a new chain after a reset). --cluster NODE:\n"
	  "           NODE's chain as a cluster holds it (stream KZ_AUDIT; its keys and head in\n"
	  "           KZ_TRUST), rebuilt in a temporary directory and checked the same way, NATS\n"
	  "           reached as this node's configuration says (docs/CLUSTER.md)\n"
	  "  show     print the entries that match the filters (JSON lines)\n"
	  "  reset    (node stopped) move a log the node refuses to start on -- shorter than its\n"
	  "           signed head: emptied, cut, deleted -- to DIR/audit/quarantine-TIME/ and begin a\n"
	  "           new chain whose first entry names it and the reason\n" },
	{ "policy", cli_policy_main, "check, reload or try out the policy",
	  "usage: kizuna policy check  [--config FILE | --policy FILE --registry FILE]\n"
	  "       kizuna policy reload [--config FILE] [--data DIR]\n"
	  "       kizuna policy keygen --out DIR\n"
	  "       kizuna policy sign   --key KEYFILE [--seq N] POLICY REGISTRY\n"
	  "       kizuna policy label  [--config FILE | --policy FILE --registry FILE] LABEL\n"
	  "       kizuna policy decide [--config FILE | --policy FILE --registry FILE] --as SPIFFE-ID\n"
	  "                            [--label LABEL] [--publish TOPIC] [--subscribe FILTER]\n\n"
	  "The policy file and the identity registry are described in docs/POLICY.md; --config takes\n"
	  "their paths from policy.file and policy.registry.\n\n"
	  "  check    parse both files; every error is printed as file:line: message; exit 0 when\n"
	  "           valid (with the policy id, version and counts), 1 when not\n"
	  "  reload   check the files, then make the node on DIR (default ./var) load them (SIGHUP)\n"
	  "           and report its answer: exit 0 when in force, 1 when refused (the node keeps\n"
	  "           the policy it had)\n"
	  "  keygen   make an ML-DSA-65 policy signing key: DIR/policy-signing.key (seed, keep it\n"
	  "           offline) and DIR/policy-signing.pub (what policy.signing_key names)\n"
	  "  sign     write POLICY.manifest (a sequence number, the SHA-256 of POLICY and of\n"
	  "           REGISTRY) and its ML-DSA-65 signature POLICY.manifest.sig; --seq N, default one\n"
	  "           more than the manifest there. With policy.signing_key set, nodes (and check,\n"
	  "           reload) refuse files the signed manifest does not name, and a sequence lower\n"
	  "           than the highest the node has had in force (DIR/policy.seq)\n"
	  "  label    print the canonical form of LABEL, or why it is not valid (exit 1)\n"
	  "  decide   what the decision point says for the subject: connect, and --publish,\n"
	  "           --subscribe, reading a record labelled --label; exit 0 when all allow, 1 when\n"
	  "           any denies\n" },
	{ "ca", cli_ca_main, "the certificate authority: issue, renew, revoke, tokens, PKCS#12",
	  "usage: kizuna ca init   [--config FILE] [--data DIR] [--trust-domain TD] [--org ORG]\n"
	  "       kizuna ca issue  [--config FILE] [--data DIR] --id SPIFFE-ID [--lifetime DUR] [--server NAMES]\n"
	  "                        (--out DIR | --cert FILE --key FILE)\n"
	  "       kizuna ca renew  [--config FILE] [--data DIR] --cert FILE [--lifetime DUR] [--out FILE]\n"
	  "       kizuna ca revoke [--config FILE] [--data DIR] (SERIAL | --cert FILE) [--reason REASON]\n"
	  "       kizuna ca list   [--config FILE] [--data DIR] [--id SPIFFE-ID]\n"
	  "       kizuna ca crl    [--config FILE] [--data DIR]\n"
	  "       kizuna ca token  [--config FILE] [--data DIR] --id SPIFFE-ID [--ttl DUR] [--lifetime DUR]\n"
	  "       kizuna ca export-p12 [--config FILE] [--data DIR] --cert FILE --key FILE --out FILE.p12\n"
	  "                        (--password-file FILE | --password-env VAR)\n\n"
	  "Works on the CA in ca.dir (default DIR/pki, DIR from --data or data_dir, default ./var);\n"
	  "files and formats in docs/CA.md. DUR: a number with s, m, h or d (e.g. 90s, 24h, 7d).\n\n"
	  "  init     create a CA (ECDSA P-256), the node's server certificate and an admin identity\n"
	  "           spiffe://TD/ORG/user/admin (trust_domain, org); refuses when a CA exists\n"
	  "  issue    a client certificate for SPIFFE-ID with a new key, valid --lifetime (default\n"
	  "           ca.cert_lifetime, 24h; at most ca.max_cert_lifetime, 30d); --out DIR writes\n"
	  "           DIR/cert.pem and DIR/key.pem. --server NAMES (DNS names and IP addresses,\n"
	  "           comma-separated) makes it a server certificate too, for a NATS server of a\n"
	  "           cluster (docs/CLUSTER.md): those names in its SAN, serverAuth and clientAuth.\n"
	  "           A node's certificate for NATS: --id spiffe://TD/ORG/node/NAME (CN = NAME)\n"
	  "  renew    a new certificate (new serial, same identity, key and server names) for\n"
	  "           --cert, written over it or to --out; a revoked certificate cannot be renewed\n"
	  "  revoke   mark a certificate revoked (reason: keyCompromise, affiliationChanged,\n"
	  "           superseded, cessationOfOperation, privilegeWithdrawn, unspecified) and rewrite\n"
	  "           crl.pem; the node re-reads it and closes the identity's open connections within\n"
	  "           tls.cert_check_ms (10 s), and refuses its handshakes\n"
	  "  list     every certificate issued: serial, valid|expired|revoked, validity, identity\n"
	  "  crl      rewrite crl.pem (valid 7 days) and print it\n"
	  "  token    print a single-use enrolment token for SPIFFE-ID, usable --ttl (default\n"
	  "           ca.token_ttl, 1h); the certificate it yields is valid --lifetime\n"
	  "  export-p12  the certificate, its key and the CA in a PKCS#12 file (mode 0600, AES-256,\n"
	  "           friendly name = the SPIFFE ID) for a person to import into a browser and use\n"
	  "           the console (docs/CONSOLE.md); the password (8 characters or more) from the\n"
	  "           first line of --password-file or from the variable --password-env\n"
	  "Exit 0 on success, 1 on failure, 2 on a usage error.\n" },
	{ "stix", cli_stix_main, "import, export or sight STIX 2.1 objects through a node's TAXII API",
	  "usage: kizuna stix import FILE|- [--collection ID] [--audience A] [--batch N] [options]\n"
	  "       kizuna stix export [--collection ID] [--type T,...] [--added-after TIME]\n"
	  "                          [--created-by ID,...] [--marking ID,...] [--all-versions]\n"
	  "                          [-o FILE] [options]\n"
	  "       kizuna stix sight INDICATOR-ID [--count N] [--where-sighted IDENTITY-ID]\n"
	  "                          [--first-seen TIME] [--last-seen TIME] [--created-by ID] [options]\n\n"
	  "Talks TAXII 2.1 to a running node (docs/TAXII.md) with the identity of --data DIR/pki\n"
	  "(admin.pem, admin.key) or --cert/--key. The collection defaults to the first one this\n"
	  "identity may write (import, sight) or read (export).\n\n"
	  "  import   reads bundles, envelopes, lists or a stream of objects (JSON lines) and posts\n"
	  "           them in envelopes of --batch objects (default 500); a progress line on a\n"
	  "           terminal, each refused object with the node's reason (the first 20 unless\n"
	  "           --verbose), and a summary. --audience sets Kizuna-Audience (org:NAME,id:ID)\n"
	  "           for AMBER/AMBER+STRICT/RED objects.\n"
	  "  export   writes the collection as one STIX bundle (latest versions, or --all-versions);\n"
	  "           --created-by and --marking keep the objects created by / marked with one of\n"
	  "           the identifiers (the node's match[created_by_ref], match[object_marking_refs])\n"
	  "  sight    creates a sighting of INDICATOR-ID (checked here, then posted) and prints its id\n\n"
	  "      --url URL        the node's HTTPS address (default https://localhost:8443)\n"
	  "  -d, --data DIR       TLS files from DIR/pki (default ./var)\n"
	  "      --cafile F, --cert F, --key F   explicit TLS files\n"
	  "Exit 0 on success, 3 when the node refused some objects, 1 on an error, 2 on a usage error.\n" },
	{ "taxii", cli_taxii_main, "copy objects between another TAXII 2.1 server and the node",
	  "usage: kizuna taxii pull API-ROOT-URL --collection REMOTE-ID [--into LOCAL-ID] [options]\n"
	  "       kizuna taxii push API-ROOT-URL --collection REMOTE-ID [--from LOCAL-ID] [options]\n\n"
	  "pull: pages through the remote collection's objects (following next) and posts them\n"
	  "into the local node's collection; push: the other way. --added-after TIME starts there;\n"
	  "--state FILE keeps the last page's X-TAXII-Date-Added-Last after each page and starts\n"
	  "from it next time (resumable).\n\n"
	  "      --remote-cafile F, --remote-cert F, --remote-key F   TLS files for the remote\n"
	  "                       (default: the local ones)\n"
	  "      --user NAME:PASSWORD   HTTP Basic authentication for the remote\n"
	  "      --type T,...  --created-by ID,...  --marking ID,...  --all-versions  --url URL\n"
	  "      -d DIR  --cafile/--cert/--key  as for stix export\n"
	  "Exit 0 on success, 3 when the receiving side refused some objects, 1 on an error.\n" },
	{ "task", cli_task_main, "create, list, show, cancel or watch tasks (docs/TASKS.md)",
	  "usage: kizuna task create --assignee SPIFFE-ID --kind KIND [--params JSON] [--entity ID]...\n"
	  "                          [--precedence FLASH|IMMEDIATE|PRIORITY|ROUTINE]\n"
	  "                          [--deadline TIME|+SECONDS] [--id ID] [--label LABEL] [options]\n"
	  "       kizuna task list [--state S,...] [--open] [--assignee SPIFFE-ID] [--json] [options]\n"
	  "       kizuna task show ID [options]\n"
	  "       kizuna task cancel ID [--reason TEXT] [options]\n"
	  "       kizuna task watch ID [--interval-ms N] [--timeout S] [--json] [options]\n\n"
	  "A tasker's side of tasks, over the node's HTTPS API (/api/v1/tasks) with the identity of\n"
	  "--data DIR/pki (admin.pem, admin.key) or --cert/--key.\n"
	  "  create   creates a task for an agent (which must have registered KIND) and prints it;\n"
	  "           --label is its kz-label (default: the policy's)\n"
	  "  list     the tasks this identity may see, oldest first, one line each (--json: as sent)\n"
	  "  show     one task as JSON, with its history\n"
	  "  cancel   CREATED or SENT: cancelled at once; later: CANCEL_REQUESTED, for the agent to\n"
	  "           confirm. A task that moved meanwhile is read again (up to 5 tries); one\n"
	  "           already ended is reported (exit 1)\n"
	  "  watch    prints each new state of the task until it ends\n\n"
	  "      --url URL        the node's HTTPS address (default https://localhost:8443)\n"
	  "  -d, --data DIR       TLS files from DIR/pki (default ./var)\n"
	  "      --cafile F, --cert F, --key F   explicit TLS files\n"
	  "Exit 0 on success (watch: the task ended DONE_OK), 3 when watch saw another end, 4 when\n"
	  "watch's --timeout passed, 1 when the node refused (its reason is printed), 2 on a usage error.\n" },
	{ "agent", cli_agent_main, "a demonstration agent that carries out tasks (docs/TASKS.md)",
	  "usage: kizuna agent [--kinds KIND,...] [--entity ID] [--position LAT,LON] [--steps N]\n"
	  "                    [--step-ms MS] [-h HOST] [-p PORT] [options]\n\n"
	  "Connects over MQTT 5 with its certificate (its SPIFFE ID is the agent's identity),\n"
	  "registers KINDS (default observe,goto) on kz/agent/<identity>/kinds, subscribes to its\n"
	  "inbox kz/agent/<identity>/tasks with kz-snapshot, publishes its position as the entity ID\n"
	  "(default: the identity's last path segment) and walks each task through RECEIVED,\n"
	  "ACKNOWLEDGED, WILCO, EXECUTING and DONE_OK (a kind it does not do: REJECTED; a cancel\n"
	  "request: CANCELLED). goto {\"lat\", \"lon\"} moves it there in --steps steps (default 4)\n"
	  "of --step-ms (default 500), publishing each position; observe waits one step.\n"
	  "Prints \"task ID: STATE\" for each move. Reconnects when the connection is lost; stops on\n"
	  "SIGINT or SIGTERM.\n\n"
	  CLI_COMMON_HELP
	  "Exit 0 when stopped, 1 when refused (connection or inbox), 2 on a usage error.\n" },
	{ "adapter", cli_adapter_main, "decode recorded sensor feeds (AIS, ADS-B) as the adapters do",
	  "usage: kizuna adapter decode ais|avr|beast|sbs|iq FILE|-\n"
	  "       kizuna adapter replay ais|avr|beast|sbs|cot FILE|- [--speed max|recorded] [--label L]\n"
	  "                             [-h HOST] [-p PORT] [--data DIR | --cafile F --cert F --key F]\n\n"
	  "Decodes a recorded feed as the node's adapters do (docs/ADAPTERS.md) and prints one JSON\n"
	  "object per message; on stderr, a summary of what was refused and why.\n"
	  "  ais    NMEA 0183 !AIVDM/!AIVDO sentences (a tag block before them is allowed):\n"
	  "         checksums, multi-sentence reassembly, message types 1-5, 18, 19, 21, 24, 27,\n"
	  "         with gpsd's member names and scaling\n"
	  "  avr    Mode S frames as AVR raw hex lines (*...; or @<timestamp>...;)\n"
	  "  beast  Mode S frames in the Beast binary format\n"
	  "  sbs    SBS-1 BaseStation text (MSG,...)\n"
	  "  iq     raw 8-bit I/Q samples at 2 MHz (dump1090 --ifile), demodulated\n"
	  "Mode S: DF17/18 extended squitters whose parity checks; positions are resolved as the\n"
	  "adapter does (an even/odd pair, then locally).\n\n"
	  "replay decodes FILE the same way (cot: Cursor-on-Target XML events; their position\n"
	  "reports) and publishes each entity update to a node over MQTT 5, QoS 1, on\n"
	  "kz/entity/<id>, with this identity and --label (kz-label), so the node's policy\n"
	  "decides as for any publisher. --speed recorded keeps the gaps between the recorded\n"
	  "times (AIS tag blocks' c:, Beast and AVR '@' 12 MHz timestamps, SBS generated time);\n"
	  "max (default) sends as fast as the node acknowledges.\n"
	  "Exit 0, 1 when FILE cannot be read or the node cannot be reached, 3 when the node\n"
	  "refused some updates (the first reasons are printed), 2 on a usage error.\n" },
	{ "detect", cli_detect_main, "match indicators in sensor logs (offline scan; the node's service status)",
	  "usage: kizuna detect scan FILE|-... --indicators SOURCE [--indicators SOURCE...]\n"
	  "                          [--warninglist LIST.json...] [--label L] [--list-skipped]\n"
	  "                          [--format auto|zeek|json|eve|syslog] [--follow [--flush-ms N]]\n"
	  "       kizuna detect status [--url https://HOST:PORT] [--data DIR | --cert F --key F --cafile F]\n"
	  "                            [--json]\n\n"
	  "status: the node's detection service (detect.enabled = 1; GET /api/v1/detect/status, which\n"
	  "needs what /metrics needs under a policy): indicators by type, those not matched and why,\n"
	  "events read, matches, sightings published and stored. --json prints the node's answer.\n"
	  "Exit 0; 1 when the node cannot be reached or does not run detection; 3 when refused.\n\n"
	  "scan:\n"
	  "Runs the node's detection engine (docs/DETECTION.md) over logs on disk and prints every\n"
	  "sighting as one line: a STIX 2.1 bundle of the sighting, its observed-data and the\n"
	  "observed object. Repeated matches of an indicator on one value are one sighting (count,\n"
	  "first_seen, last_seen).\n"
	  "  --indicators SOURCE  STIX 2.1 indicators (a bundle, a JSON array or JSON lines;\n"
	  "                       pattern_type stix, the subset of docs/DETECTION.md) or a Zeek\n"
	  "                       intel file; gzip is read as well\n"
	  "  --warninglist F      a MISP warning list (list.json): indicators of its values are\n"
	  "                       not matched, and are listed as suppressed\n"
	  "  --label L            the label of the indicators (and so of their sightings)\n"
	  "  --list-skipped       list each indicator not matched (unsupported or suppressed)\n"
	  "                       with the reason, on stderr\n"
	  "  --format F           the logs' format; auto (default) reads Zeek TSV by its #fields\n"
	  "                       header, JSON lines as Zeek JSON or Suricata EVE, and other lines\n"
	  "                       as syslog\n"
	  "  --follow             read the files, then follow them as they grow and rotate (renamed\n"
	  "                       or truncated), as tail -F does; sightings new or changed are\n"
	  "                       printed every --flush-ms (default 1000) until SIGINT or SIGTERM\n"
	  "Logs may be gzip (not with --follow). On stderr: a summary of indicators, events,\n"
	  "matches and sightings.\n"
	  "Exit 0; 1 when a file cannot be read or no indicator can be matched; 2 on a usage\n"
	  "error.\n" },
	{ "enroll", cli_enroll_main, "get a certificate from a node with an enrolment token",
	  "usage: kizuna enroll --token TOKEN --cafile FILE --out DIR [--host HOST] [--port PORT]\n\n"
	  "Generates an ECDSA P-256 key here, connects to the node's MQTT TLS listener (default\n"
	  "localhost:8883, verified against --cafile, ALPN kizuna-enroll/1, no client certificate),\n"
	  "sends the token and a certificate request, and writes DIR/key.pem (0600), DIR/cert.pem\n"
	  "and DIR/ca.pem. The private key never leaves this machine; the identity and lifetime\n"
	  "are the token's. A token works once, until it expires.\n"
	  "Exit 0 when enrolled, 1 when refused (the node's reason is printed), 2 on a usage error.\n" },
	{ "help", help_main, "help on a command, or `help config`",
	  "usage: kizuna help [COMMAND | config]\n" },
	{ "version", version_main, "print the version", "usage: kizuna version\n" },
};

void cli_help(const char *name)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(commands[i].name, name) == 0) {
			fputs(commands[i].help, stdout);
			return;
		}
	}
}

static void overview(FILE *f)
{
	fprintf(f, "kizuna %s — zero-trust data fabric node\n\nusage: kizuna COMMAND [ARGS]\n\n", KZ_VERSION);
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n`kizuna help COMMAND` for details, `kizuna help config` for the configuration file.\n");
}

static int help_main(int argc, char **argv)
{
	if (argc < 2) {
		overview(stdout);
		return 0;
	}
	if (strcmp(argv[1], "config") == 0) {
		int man = argc > 2 && strcmp(argv[2], "--man") == 0;
		if (!man)
			printf("Configuration file: one `key = value` per line; `#` starts a comment (in\n"
			       "store.retention lines `#` is the MQTT wildcard: comment those on their own line).\n"
			       "Unknown keys and bad values are errors (see `kizuna serve --check`).\n\n");
		node_config_print_help(stdout, man);
		return 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(commands[i].name, argv[1]) == 0) {
			fputs(commands[i].help, stdout);
			return 0;
		}
	}
	fprintf(stderr, "kizuna help: no command '%s'\n", argv[1]);
	return 2;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN); /* a peer that closes is an error to report, not a reason to die */
	if (argc < 2) {
		overview(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return help_main(1, argv);
	if (strcmp(argv[1], "--version") == 0)
		return version_main(0, NULL);
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].name, argv[1]) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "kizuna: unknown command '%s'\n\n", argv[1]);
	overview(stderr);
	return 2;
}
