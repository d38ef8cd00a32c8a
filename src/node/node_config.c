/* node_config.c — `key = value` configuration with # comments, driven by one table. */
#include "base/kz_topic.h"
#include "node/node_config.h"
#include "base/kz_err.h"
#include "base/kz_file.h"
#include "trust/policy.h"
#include "trust/sign.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum dir_type { T_STR, T_U16, T_U32, T_U64, T_UINT, T_LOGLEVEL, T_ADDR, T_FSYNC, T_RULE, T_IDLIMIT };

struct directive {
	const char *name;
	enum dir_type type;
	size_t offset;
	size_t size;      /* T_STR buffer size */
	uint64_t min, max;
	const char *def;  /* default, as text for help */
	const char *doc;
};

#define C(f) offsetof(struct node_config, f)
#define L(f) (offsetof(struct node_config, limits) + offsetof(struct mqtt_limits, f))
#define S(f) sizeof(((struct node_config *)0)->f)

static const struct directive directives[] = {
	{ "data_dir", T_STR, C(data_dir), S(data_dir), 0, 0, "./var",
	  "Directory for the node's data; on first start a certificate authority with server and admin certificates is created in DIR/pki (docs/CA.md)." },
	{ "mqtt.listen", T_ADDR, C(mqtt_listen), S(mqtt_listen), 0, 0, "127.0.0.1:8883",
	  "MQTT over TLS 1.3 listener, host:port. Use 0.0.0.0:8883 or [::]:8883 to serve other hosts. There is no plaintext listener." },
	{ "https.listen", T_ADDR, C(https_listen), S(https_listen), 0, 0, "127.0.0.1:8443",
	  "HTTPS API listener: HTTP/1.1 and HTTP/2 over TLS 1.3 with the same certificates and groups as MQTT (docs/HTTP.md). A client certificate is required for everything but GET /healthz. Serves /healthz, /metrics and TAXII 2.1 at /taxii2/. Port 0: any free port." },
	{ "https.enabled", T_U32, C(https_enabled), 0, 0, 1, "1", "0: no HTTPS listener." },
	{ "https.console_dir", T_STR, C(https_console_dir), S(https_console_dir), 0, 0, "auto",
	  "The web console's files, served at / to clients with a certificate (docs/CONSOLE.md). auto: share/kizuna/console next to an installed kizuna, else the build tree's console/. none: no console." },
	{ "mqtt.websocket", T_U32, C(mqtt_websocket), 0, 0, 1, "1",
	  "1: MQTT over WebSocket on the HTTPS listener at /mqtt (subprotocol \"mqtt\"; HTTP/1.1), with the client certificate, policy and limits of the MQTT port (docs/MQTT.md \"Over WebSocket\"). 0: no /mqtt." },
	{ "https.max_body_bytes", T_U32, C(https_max_body), 0, 1024, 1073741824, "16777216",
	  "Largest HTTPS request body; larger: 413 with a JSON error." },
	{ "https.max_anonymous_body_bytes", T_U32, C(https_max_anon_body), 0, 0, 1073741824, "4096",
	  "Largest request body on an HTTPS connection without a verified, unrevoked client certificate (only /healthz answers such a connection, and libh2o reads a body whole before any handler, so before the 401); larger: 413 with a JSON error (HTTP/1.1) or the stream reset (HTTP/2)." },
	{ "https.request_timeout_ms", T_U32, C(https_req_timeout_ms), 0, 100, 3600000, "10000",
	  "An HTTP/1.1 request (head and body) must arrive within this." },
	{ "https.idle_timeout_ms", T_U32, C(https_idle_timeout_ms), 0, 100, 86400000, "60000",
	  "An idle HTTP/2 connection is closed after this." },
	{ "taxii.collections", T_STR, C(taxii_collections), S(taxii_collections), 0, 0, "DIR/taxii-collections.json",
	  "The TAXII 2.1 collections, a JSON list of {id, title, description, allow_custom, readers, writers} (docs/TAXII.md); created with one collection on first start." },
	{ "taxii.max_page", T_U32, C(taxii_max_page), 0, 1, 100000, "1000", "Largest page (limit) a TAXII request gets." },
	{ "taxii.default_page", T_U32, C(taxii_default_page), 0, 1, 100000, "100", "Page size when a TAXII request gives no limit." },
	{ "entity.max_entities", T_U32, C(entity_max_entities), 0, 1, 100000000, "1000000",
	  "Entities the picture holds at most (removed ones kept as tombstones included); an update that would create one more is not applied (docs/ENTITIES.md)." },
	{ "entity.default_stale_ms", T_U32, C(entity_default_stale_ms), 0, 1000, 4000000000u, "300000",
	  "An entity update without stale_time is stale this long after its source_time." },
	{ "entity.default_expiry_ms", T_U32, C(entity_default_expiry_ms), 0, 1000, 4000000000u, "3600000",
	  "An entity update without expiry_time is removed this long after its stale_time." },
	{ "entity.removed_keep_ms", T_U32, C(entity_removed_keep_ms), 0, 0, 4000000000u, "60000",
	  "A removed entity is kept this long as a tombstone, so that an older update cannot bring it back." },
	{ "entity.max_interned", T_U32, C(entity_max_interned), 0, 16, 100000000, "1000000",
	  "Distinct shared strings (types, names, labels, identities, adapters) of the picture at most." },
	{ "entity.max_page", T_U32, C(entity_max_page), 0, 1, 100000, "1000", "Largest page (limit) of GET /api/v1/entities." },
	{ "entity.default_page", T_U32, C(entity_default_page), 0, 1, 100000, "100",
	  "Page size of GET /api/v1/entities when the request gives no limit." },
	{ "entity.stream_ring", T_U32, C(entity_stream_ring), 0, 16, 16777216, "16384",
	  "Events of the picture kept for its streams (about 150 bytes each, and the entity's JSON once a stream has written it, some 500 more): a stream further behind gets a reset and a new snapshot." },
	{ "entity.max_streams", T_U32, C(entity_max_streams), 0, 0, 1000000, "1000", "Open entity streams (GET /api/v1/stream/entities) at most; more: 503." },
	{ "entity.stream_heartbeat_ms", T_U32, C(entity_stream_heartbeat_ms), 0, 1000, 3600000, "15000",
	  "An entity stream with nothing to send gets a comment line after this long (keep it under proxies' idle timeouts)." },
	{ "entity.stream_interval_ms", T_U32, C(entity_stream_interval_ms), 0, 0, 3600000, "0",
	  "An entity stream is written at most this often: an entity that changes faster reaches each client at most once per interval, as it is then (0: as fast as the client reads)." },
	{ "taxii.max_post_objects", T_U32, C(taxii_max_post), 0, 1, 1000000, "10000",
	  "Objects in one TAXII POST envelope; more: 413." },
	{ "taxii.max_scan", T_U32, C(taxii_max_scan), 0, 1000, 100000000, "200000",
	  "Index entries one TAXII page may examine; a sparse filter gets a shorter page with more=true and a next cursor." },
	{ "taxii.max_statuses", T_U32, C(taxii_max_statuses), 0, 16, 1000000, "10000",
	  "TAXII status resources kept in memory (the oldest are dropped)." },
	{ "taxii.max_status_bytes", T_U32, C(taxii_max_status_bytes), 0, 65536, 4294967295u, "67108864",
	  "Memory the kept TAXII statuses may use (about 90 bytes per object posted); the oldest are dropped beyond it." },
	{ "task.max_tasks", T_U32, C(task_max_tasks), 0, 1, 100000000, "100000",
	  "Tasks the node holds in memory, open and recently ended (docs/TASKS.md); a creation beyond: 503 (MQTT 0x97)." },
	{ "task.max_agents", T_U32, C(task_max_agents), 0, 1, 10000000, "10000", "Agents with registered task kinds at most." },
	{ "task.max_kinds", T_U32, C(task_max_kinds), 0, 1, 1024, "64", "Task kinds one agent registers at most." },
	{ "task.ended_keep_ms", T_U32, C(task_ended_keep_ms), 0, 0, 4000000000u, "86400000",
	  "An ended task (DONE_*, REJECTED, CANCELLED, EXPIRED) is dropped from memory this long after its last move; its records stay in the log." },
	{ "task.max_page", T_U32, C(task_max_page), 0, 1, 100000, "1000", "Tasks in one answer of GET /api/v1/tasks at most." },
	{ "adapter.ais.udp", T_STR, C(adapter_ais_udp), S(adapter_ais_udp), 0, 0, "",
	  "AIS: receive NMEA 0183 !AIVDM sentences as UDP datagrams on host:port (the usual port is 10110; docs/ADAPTERS.md). Empty: off." },
	{ "adapter.ais.tcp", T_STR, C(adapter_ais_tcp), S(adapter_ais_tcp), 0, 0, "",
	  "AIS: connect to a TCP feed of NMEA sentences at host:port (an AIS receiver or aggregator), again with backoff when it drops. Empty: off." },
	{ "adapter.ais.identity", T_STR, C(adapter_ais_identity), S(adapter_ais_identity), 0, 0, "",
	  "The identity the AIS adapter's records carry (empty: spiffe://<trust_domain>/<org>/service/ais-adapter); the policy must let it publish on kz/entity/#, as for any publisher." },
	{ "adapter.ais.label", T_STR, C(adapter_ais_label), S(adapter_ais_label), 0, 0, "",
	  "The label of the AIS adapter's records (text form, docs/POLICY.md). Empty: the policy's default for kz/entity/<id>." },
	{ "adapter.ais.max_vessels", T_U32, C(adapter_ais_max_vessels), 0, 16, 100000000, "100000",
	  "Vessels whose static data (name, call sign, dimensions, voyage) the AIS adapter keeps; when full it starts over." },
	{ "adapter.ais.reassembly_ms", T_U32, C(adapter_ais_reassembly_ms), 0, 100, 600000, "5000",
	  "The parts of a multi-sentence AIS message must all come within this; else they are dropped." },
	{ "adapter.adsb.avr", T_STR, C(adapter_adsb_avr), S(adapter_adsb_avr), 0, 0, "",
	  "ADS-B: connect to a dump1090-style receiver's AVR raw output (host:port, usually port 30002; docs/ADAPTERS.md). Empty: off." },
	{ "adapter.adsb.beast", T_STR, C(adapter_adsb_beast), S(adapter_adsb_beast), 0, 0, "",
	  "ADS-B: connect to a receiver's Beast binary output (host:port, usually 30005). Empty: off." },
	{ "adapter.adsb.sbs", T_STR, C(adapter_adsb_sbs), S(adapter_adsb_sbs), 0, 0, "",
	  "ADS-B: connect to a receiver's SBS-1 BaseStation output (host:port, usually 30003). Empty: off." },
	{ "adapter.adsb.identity", T_STR, C(adapter_adsb_identity), S(adapter_adsb_identity), 0, 0, "",
	  "The identity the ADS-B adapter's records carry (empty: spiffe://<trust_domain>/<org>/service/adsb-adapter); the policy must let it publish on kz/entity/#." },
	{ "adapter.adsb.label", T_STR, C(adapter_adsb_label), S(adapter_adsb_label), 0, 0, "",
	  "The label of the ADS-B adapter's records. Empty: the policy's default for kz/entity/<id>." },
	{ "adapter.adsb.reference", T_STR, C(adapter_adsb_reference), S(adapter_adsb_reference), 0, 0, "",
	  "The receiver's position LAT,LON (degrees): a first position frame and surface positions are decoded against it. Empty: airborne positions wait for an even/odd pair, surface positions for an airborne one." },
	{ "adapter.adsb.max_aircraft", T_U32, C(adapter_adsb_max_aircraft), 0, 16, 10000000, "10000",
	  "Aircraft whose CPR frames and last position the ADS-B adapter keeps; when full it starts over." },
	{ "detect.enabled", T_U32, C(detect_enabled), 0, 0, 1, "0",
	  "1: the detection service runs (docs/DETECTION.md): indicators from the TAXII collections matched in sensor logs taken from MQTT topics and followed files, sightings published and stored." },
	{ "detect.indicators", T_STR, C(detect_indicators), S(detect_indicators), 0, 0, "*",
	  "The TAXII collections (ids, comma-separated) whose indicator objects are matched; * every collection but detect.collection (where the node writes its sightings, and an indicator object for each Zeek intel line sighted)." },
	{ "detect.collection", T_STR, C(detect_collection), S(detect_collection), 0, 0, "",
	  "The TAXII collection (id) sightings are stored in, each as its sighting, observed-data and observed object; empty: not stored in TAXII." },
	{ "detect.topics", T_STR, C(detect_topics), S(detect_topics), 0, 0, "kz/logs/#",
	  "MQTT topic filters (comma-separated) whose records are sensor log lines (Zeek TSV or JSON, Suricata EVE, syslog; one or more lines a message; a Zeek TSV header is kept per topic); empty: none." },
	{ "detect.files", T_STR, C(detect_files), S(detect_files), 0, 0, "",
	  "Log files (comma-separated) the node follows as they grow and rotate, from their end; empty: none." },
	{ "detect.file_label", T_STR, C(detect_file_label), S(detect_file_label), 0, 0, "",
	  "The label of the events of detect.files (empty: the policy's default label)." },
	{ "detect.intel", T_STR, C(detect_intel), S(detect_intel), 0, 0, "",
	  "Indicator files (comma-separated; Zeek intel files, or STIX bundles, JSON arrays or JSON lines of indicators; gzip too) matched beside the TAXII collections; each is read again when it changes (its indicators replaced). Their base names must differ." },
	{ "detect.intel_label", T_STR, C(detect_intel_label), S(detect_intel_label), 0, 0, "",
	  "The label of the indicators of detect.intel (empty: none: the sightings take the event's label)." },
	{ "detect.warninglists", T_STR, C(detect_warninglists), S(detect_warninglists), 0, 0, "",
	  "MISP warning lists (list.json files, or directories holding */list.json; comma-separated): indicators of known-benign values are not matched, and listed as suppressed." },
	{ "detect.sighting_topic", T_STR, C(detect_sighting_topic), S(detect_sighting_topic), 0, 0, "kz/detect/sighting",
	  "Sightings are published as records on TOPIC/<sighting id>, a STIX 2.1 bundle each, under the stricter of the indicator's and the event's labels." },
	{ "detect.identity", T_STR, C(detect_identity), S(detect_identity), 0, 0, "",
	  "The identity sightings are published as (the policy must let it publish on detect.sighting_topic with their labels); empty: the node's, spiffe://DOMAIN/ORG/node/NODE_ID." },
	{ "detect.flush_ms", T_U32, C(detect_flush_ms), 0, 50, 3600000, "500",
	  "Matches are aggregated this long: each sighting new or seen again in that time is written once (a new version, its count and last_seen updated)." },
	{ "detect.max_indicators", T_U32, C(detect_max_indicators), 0, 1, 100000000, "10000000",
	  "Indicators matched at most; more are counted as refused." },
	{ "detect.max_sightings", T_U32, C(detect_max_sightings), 0, 16, 100000000, "100000",
	  "Sightings kept for aggregation; beyond it they are forgotten after a flush (a repeated hit then starts a new count)." },
	{ "detect.resume", T_U32, C(detect_resume), 0, 0, 1, "1",
	  "1: after a restart, matching resumes where it stopped (the log position saved in DATA_DIR/detect.pos once a flush's sightings are written, with the Zeek headers the log topics had there in DATA_DIR/detect.headers), so log records written meanwhile or not yet matched at a stop or crash are matched; records matched before a crash but not yet flushed are matched again. 0: matching starts at the log's end." },
	{ "detect.resume_max", T_U32, C(detect_resume_max), 0, 0, UINT32_MAX, "1000000",
	  "With detect.resume: the most log records matched at a start (they are read before the node serves); older ones since the saved position are not matched, said in the log. 0: no limit." },
	{ "detect.all_nodes", T_U32, C(detect_all_nodes), 0, 0, 1, "0",
	  "In a cluster (cluster.nats set): 0: log records are matched by the node that accepted them (each once in the cluster; the others have them in their logs too); 1: this node also matches the log records other nodes accepted (a sighting from each node that does)." },
	{ "detect.max_topics", T_U32, C(detect_max_topics), 0, 1, 1000000, "1024",
	  "Log topics read at once (each keeps its reader and Zeek header); records of further topics are counted and skipped." },
	{ "detect.max_headers_bytes", T_U32, C(detect_max_headers), 0, 256, 1073741824, "67108864",
	  "With detect.resume: the largest DATA_DIR/detect.headers written or read. Headers that come to more are not saved (an empty set is, said in the log), and a larger file is not read: those topics are read without a header after a restart until it comes again." },
	{ "tak.listen", T_STR, C(tak_listen), S(tak_listen), 0, 0, "",
	  "The TAK server endpoint (docs/ADAPTERS.md \"TAK\"): TAK clients connect here over TLS with a certificate of the node's CA and speak Cursor-on-Target, host:port (TAK's streaming port is 8089). Empty: off." },
	{ "tak.max_connections", T_U32, C(tak_max_connections), 0, 1, 1000000, "1000", "TAK client connections at most; more are closed after the handshake." },
	{ "tak.max_event_bytes", T_U32, C(tak_max_event_bytes), 0, 256, 16777216, "65536", "Longest CoT event a TAK client may send; a longer one is skipped and counted." },
	{ "tak.push_interval_ms", T_U32, C(tak_push_interval_ms), 0, 50, 3600000, "1000",
	  "A TAK client gets the entities that changed at most this often; changes in between are coalesced (it gets the newest state)." },
	{ "tak.protocol", T_U32, C(tak_protocol), 0, 0, 1, "1",
	  "The highest TAK Protocol version offered to TAK clients (docs/ADAPTERS.md \"TAK Protocol version 1\"): 1 offers version 1 (protobuf, 0xbf-framed) when a client connects, and a client that asks for it is switched; 0 offers nothing and every client stays on XML." },
	{ "tak.max_output_bytes", T_U32, C(tak_max_output_bytes), 0, 65536, 1073741824, "4194304",
	  "While more than this waits to be sent to a TAK client, it gets nothing new; its changes coalesce until it reads." },
	{ "adapter.reconnect_max_ms", T_U32, C(adapter_reconnect_max_ms), 0, 1000, 3600000, "30000",
	  "Longest wait before connecting again to a feed that dropped (the wait starts at 0.5 s and doubles)." },
	{ "memory.keep_free_bytes", T_U64, C(mem_keep_free), 0, 0, 1099511627776ull, "67108864",
	  "Freed memory the node keeps for reuse; beyond it, freed memory is given back to the system within a second (after a flood the process shrinks to its use plus this). 0: give everything back." },
	{ "adapter.max_pending_bytes", T_U64, C(adapter_max_pending_bytes), 0, 1048576, 1099511627776ull, "67108864",
	  "While more than this waits to be written to the log, adapters drop UDP datagrams (counted) and stop reading TCP feeds." },
	{ "limits.identity", T_IDLIMIT, 0, 0, 0, 0, "default connections=256 publish_rate=100000 publish_bytes=256M https_rate=2000",
	  "Per-identity limits, repeatable: WHO [connections=N] [publish_rate=N] [publish_bytes=SIZE] [https_rate=N]. WHO is default, an identity kind (user, sensor, service, node) or role=NAME (a registry role); an identity gets the first role line it has a role for, else its kind's, else the default; unnamed limits keep the built-in default; 0 = no limit. Over connections: CONNACK 0x9F (3.1.1: 3); over publish_rate or publish_bytes (per second, token buckets holding one second's worth): DISCONNECT 0x96; over https_rate: HTTP 429 with Retry-After. Refusals are counted per identity in /metrics and audited as one summary per identity and 10 s." },
	{ "limits.identity_max", T_U32, C(id_limits_max), 0, 16, 16777216, "65536",
	  "Identities whose limits are tracked; beyond it the rest share one entry (and its limits)." },
	{ "health.index_lag_max", T_U64, C(health_index_lag), 0, 1, UINT64_MAX, "100000",
	  "GET /healthz reports the index degraded when it is more than this many records behind the log." },
	{ "threads", T_UINT, C(threads), 0, 0, 256, "0",
	  "Network worker threads, each with its own event loop and connections; 0 = one per core." },
	{ "log_level", T_LOGLEVEL, C(log_level), 0, 0, 0, "info", "error, warn, info or debug." },
	{ "tls.ca", T_STR, C(tls_ca), S(tls_ca), 0, 0, "DIR/pki/ca.pem",
	  "CA certificate(s) that client certificates must chain to." },
	{ "tls.cert", T_STR, C(tls_cert), S(tls_cert), 0, 0, "DIR/pki/server.pem", "Server certificate chain." },
	{ "tls.key", T_STR, C(tls_key), S(tls_key), 0, 0, "DIR/pki/server.key", "Server private key." },
	{ "tls.groups", T_STR, C(tls_groups), S(tls_groups), 0, 0, "X25519MLKEM768:X25519:P-256",
	  "TLS 1.3 key-exchange groups in preference order. X25519MLKEM768 is the hybrid post-quantum group (ML-KEM-768 + X25519, kizuna's own OpenSSL provider; docs/PQC.md); X25519 lets classical clients in; P-256 those without X25519 (FIPS-mode and many embedded TLS stacks)." },
	{ "tls.require_pq", T_U32, C(tls_require_pq), 0, 0, 1, "0",
	  "1: accept only the hybrid post-quantum group X25519MLKEM768 (overrides tls.groups); a client that offers only classical key exchange is refused during the handshake, and the log says why." },
	{ "tls.crl", T_STR, C(tls_crl), S(tls_crl), 0, 0, "DIR/pki/crl.pem",
	  "Certificate revocation list (PEM, signed by tls.ca) written by `kizuna ca revoke`. Handshakes with a revoked certificate are refused; it is re-read when it changes (checked every tls.cert_check_ms, and on SIGHUP). A missing file means nothing is revoked; a file that does not verify is refused (at start: the node does not start; later: the previous list stays in force)." },
	{ "tls.cert_check_ms", T_U32, C(cert_check_ms), 0, 100, 3600000, "10000",
	  "Open connections whose certificate was revoked or has expired are closed within this interval (MQTT 5: DISCONNECT 0x87 with the reason)." },
	{ "ca.dir", T_STR, C(ca_dir), S(ca_dir), 0, 0, "DIR/pki",
	  "The certificate authority's directory (ca.pem, ca.key, issued, tokens, crl.pem; docs/CA.md) used by `kizuna ca` and for enrolment." },
	{ "ca.cert_lifetime", T_U32, C(ca_lifetime_s), 0, 60, UINT32_MAX, "86400",
	  "Default lifetime of a certificate issued by `kizuna ca issue`, `ca renew` and `ca token`, in seconds (24 h)." },
	{ "ca.max_cert_lifetime", T_U32, C(ca_max_lifetime_s), 0, 60, UINT32_MAX, "2592000",
	  "Longest lifetime the CA grants a client certificate, in seconds (30 days); longer requests are refused by the CLI and cut to this at enrolment." },
	{ "ca.token_ttl", T_U32, C(token_ttl_s), 0, 1, 31536000, "3600",
	  "Default time an enrolment token (`kizuna ca token`) stays usable, in seconds." },
	{ "enroll.enabled", T_U32, C(enroll_enabled), 0, 0, 1, "1",
	  "1: clients may enrol with a token over the MQTT TLS listener (ALPN kizuna-enroll/1, no client certificate; `kizuna enroll`). Needs ca.dir/ca.key. 0: refused." },
	{ "enroll.max_request_bytes", T_U32, C(enroll_max_bytes), 0, 1024, 1048576, "16384",
	  "Largest enrolment request (token line and PEM certificate request)." },
	{ "enroll.max_connections", T_U32, C(enroll_max_conns), 0, 1, 100000, "64",
	  "Enrolment connections open at once, over all workers; more are answered ERROR busy and closed." },
	{ "enroll.timeout_ms", T_U32, C(enroll_timeout_ms), 0, 100, 600000, "10000",
	  "An enrolment connection must deliver its whole request within this." },
	{ "trust_domain", T_STR, C(trust_domain), S(trust_domain), 0, 0, "kizuna.local",
	  "The node's SPIFFE trust domain: client identities must be spiffe://<trust_domain>/...; the CA created on first start issues in it." },
	{ "org", T_STR, C(org), S(org), 0, 0, "dev", "Organisation used in the development admin identity." },
	{ "node_id", T_STR, C(node_id), S(node_id), 0, 0, "the host name",
	  "This node's name: the origin node of every record it accepts." },
	{ "store.fsync", T_FSYNC, C(store), 0, 0, 0, "always",
	  "When a record counts as durable, and so when QoS 1/2 publishes are acknowledged: always (fdatasync before every acknowledgement; one sync covers each batch), interval:<ms> (acknowledged once written; synced at most <ms> later: a power loss can lose that window), never (left to the kernel)." },
	{ "store.segment_bytes", T_U64, C(store.segment_bytes), 0, 4096, UINT64_MAX, "67108864",
	  "Size at which the record log starts a new segment file (DIR/log/*.seg)." },
	{ "store.retention", T_RULE, C(store), 0, 0, 0, "none (keep everything)",
	  "A retention rule, repeatable: FILTER [max_age=DUR] [max_bytes=SIZE] [keep_last=N] [qos0=store|skip]. A record is governed by the first rule whose MQTT topic filter matches its topic; records no rule matches are kept. max_age drops records accepted longer ago (DUR: 30s, 15m, 24h, 7d); max_bytes keeps the rule's newest records within SIZE bytes of log (512K, 100M, 10G); keep_last keeps the newest N records of each topic (compaction); qos0=skip delivers QoS 0 messages on these topics without storing them. Each topic's retained message is kept regardless. '#' here is the wildcard, not a comment. Retention rewrites closed segments in the background (see store.retention_interval_ms)." },
	{ "store.retention_interval_ms", T_U32, C(store.retention_interval_ms), 0, 100, 86400000, "60000",
	  "Time between retention passes." },
	{ "audit.checkpoint_entries", T_U32, C(audit_ck_entries), 0, 1, 100000000, "1000",
	  "Entries of the audit log (DIR/audit/audit.log) between two signed checkpoints." },
	{ "audit.checkpoint_ms", T_U32, C(audit_ck_ms), 0, 100, 86400000, "10000",
	  "Longest time between signed checkpoints of the audit log: the first entry after it is followed by one (and the node writes one when it stops)." },
	{ "audit.summary_window_ms", T_U32, C(audit_window_ms), 0, 100, 3600000, "10000",
	  "Denials are summarised by kind (the subject, or the client address without its port when there is none; the action; the reason): the first of a kind in this window is written in full, the rest are counted and written as one entry with a count and samples of what they asked for when the window ends. Nothing is dropped; one peer can cause at most two entries per kind per window (docs/AUDIT.md)." },
	{ "audit.max_file_bytes", T_U64, C(audit_max_file_bytes), 0, 0, UINT64_MAX, "67108864",
	  "audit.log is rotated when it reaches this size: it ends with a signed checkpoint and is renamed audit-<first entry>.log; the chain continues in the new audit.log and `kizuna audit verify` follows it across files. 0: never rotate." },
	{ "audit.max_files", T_U32, C(audit_max_files), 0, 0, 100000, "16",
	  "Rotated audit files kept. Beyond it the oldest is deleted after a signed entry records its name, its last entry and that entry's hash (verify accepts a log that starts later only with that record). 0: keep them all." },
	{ "policy.file", T_STR, C(policy_file), S(policy_file), 0, 0, "none",
	  "The policy file (docs/POLICY.md): who may connect, publish and subscribe where, the label model and default labels. Without it the node denies everything (deny by default), except that a node which made its development PKI on first start uses the development policy made with it (DIR/pki/dev.policy and DIR/pki/dev.identities, allowing the admin). Reloaded on SIGHUP or `kizuna policy reload`; a file that does not parse is refused and the running policy kept." },
	{ "cluster.nats", T_STR, C(cluster_nats), S(cluster_nats), 0, 0, "none",
	  "NATS servers of the cluster's JetStream, comma-separated tls://host:port (docs/CLUSTER.md). Empty: a single node on its own log. Set: every record this node accepts is also published to the stream KZ_RECORDS, and a QoS 1/2 acknowledgement waits until JetStream has it. Tried in this order (list the node's own nats-server first); a server through which JetStream does not answer for 3 x cluster.publish_timeout_ms (cut off from the others) is left for the next, after half a timeout when it does not answer a NATS ping either (stopped, or its host gone without closing the connection)." },
	{ "cluster.cert", T_STR, C(cluster_cert), S(cluster_cert), 0, 0, "none",
	  "The node's client certificate for NATS (spiffe://TD/ORG/node/NAME, from this CA: kizuna ca issue --id ...). Required with cluster.nats." },
	{ "cluster.key", T_STR, C(cluster_key), S(cluster_key), 0, 0, "none", "Its private key." },
	{ "cluster.replicas", T_U32, C(cluster_replicas), 0, 1, 5, "3",
	  "Replicas of the stream KZ_RECORDS. 3 in production (never 2); 1 only for a test with one NATS server." },
	{ "cluster.publish_timeout_ms", T_U32, C(cluster_publish_timeout_ms), 0, 100, 600000, "2000",
	  "A publish to JetStream not acknowledged within this: JetStream has no quorum (cluster.on_quorum_loss)." },
	{ "cluster.publish_window", T_U32, C(cluster_publish_window), 0, 1, 1000000, "4096",
	  "Records published to JetStream and not yet acknowledged, at most." },
	{ "cluster.batch_records", T_U32, C(cluster_batch_records), 0, 1, 65536, "64",
	  "Records of this node that become durable together go to JetStream together, up to this many in one message (1: one message per record). Each message costs every nats-server a Raft proposal, a write and a delivery and acknowledgement per node, whatever its size (docs/CLUSTER.md \"Batches\")." },
	{ "cluster.batch_bytes", T_U32, C(cluster_batch_bytes), 0, 1024, 67108864, "262144",
	  "A batch's size in bytes, at most (a larger record goes alone); keep it under the nats-servers' max_payload (1 MiB by default)." },
	{ "cluster.bridge_ms", T_U32, C(cluster_bridge_ms), 0, 0, 600000, "1000",
	  "Records of this node that have waited this long with no confirmation from KZ_RECORDS (its leader died: nats-server 2.9 waits 4 to 9 s before the others elect one) are also published to the stream KZ_BRIDGE, whose leader is kept on another server, and its confirmation acknowledges them; KZ_RECORDS still gets every one of them from this node's log once it has a leader, or from another node's copy of KZ_BRIDGE if this node dies first (cluster.bridge_adopt_ms). 0: no bridge, QoS 1/2 acknowledgements wait for KZ_RECORDS (docs/CLUSTER.md \"The bridge\")." },
	{ "cluster.bridge_adopt_ms", T_U32, C(cluster_bridge_adopt_ms), 0, 100, 3600000, "5000",
	  "Records of another node acknowledged on KZ_BRIDGE that this node does not have, while nothing more of that node has come through KZ_RECORDS for this long (it died, or is cut off, before it published them there), are published to KZ_RECORDS for it, so that every node delivers them. At once when a CONNECT of a client that moved here waits for them (cluster.failover_order_ms). Works whatever this node's cluster.bridge_ms (docs/CLUSTER.md \"The bridge\")." },
	{ "cluster.gap_timeout_ms", T_U32, C(cluster_gap_timeout_ms), 0, 0, 3600000, "30000",
	  "A record of another node that came before records of its origin still awaited (after a failed publish there, the stream has them in another order) is stored and held back, so that each origin's records are delivered in order; after this long without them, what was held back is delivered (docs/CLUSTER.md \"The path of a delivery on another node\")." },
	{ "cluster.consumer_stall_ms", T_U32, C(cluster_consumer_stall_ms), 0, 1000, 3600000, "10000",
	  "This node's consumer of the stream is deleted and made again from the stream's start (dropping what this node already has) when, for this long while the stream answers, it says it delivered everything while the stream has more, or records wait behind a gap; at once when it delivered beyond the stream's end (docs/CLUSTER.md \"Faults and what each does\")." },
	{ "cluster.consumer_lost_ms", T_U32, C(cluster_consumer_lost_ms), 0, 500, 3600000, "2000",
	  "This node's consumer of the stream (one replica, in memory) is made again on another server when, for this long while the stream answers, it does not answer (its server is down or cut off); it starts after what this node has acknowledged (docs/CLUSTER.md \"Our consumer\")." },
	{ "cluster.consumer_scan_ms", T_U32, C(cluster_consumer_scan_ms), 0, 1000, 3600000, "30000",
	  "While no consumer of this node's is waiting to be deleted, the node reads JetStream's names of its consumers this often and deletes those it does not use: a making sent through a stopped server reaches JetStream when the server resumes, after the node had left that consumer and deleted it (docs/CLUSTER.md \"Our consumer\")." },
	{ "cluster.session_margin_ms", T_U32, C(cluster_session_margin_ms), 0, 0, 3600000, "5000",
	  "A persistent session that moves to this node from another gets the records accepted since its last acknowledgement on the other node, less this margin: the longest a record may take from its acceptance to its origin's log and to JetStream. More margin, more messages delivered twice after a move; less, a record slower than that can be missed (docs/CLUSTER.md \"Sessions\")." },
	{ "cluster.failover_order_ms", T_U32, C(cluster_failover_order_ms), 0, 0, 60000, "3000",
	  "A CONNECT for a client id that another node served last waits up to this long, before its CONNACK, until this node has taken every record the stream held when the CONNECT came: what the client published on the other node reaches subscribers here before what it publishes now (per-publisher order across a failover, docs/CLUSTER.md \"Order\"). Usually a few tens of milliseconds; 0: no wait. In a cluster, must be below limits.connect_timeout_ms." },
	{ "cluster.node_dead_ms", T_U32, C(cluster_node_dead_ms), 0, 0, 3600000, "30000",
	  "Every node writes a heartbeat to the bucket KZ_SESSIONS. A node whose heartbeat has not come while this node's own came back for this long is taken as dead: its sessions are taken over by a live node (compare-and-set, one wins), which publishes the wills of the clients that were connected to it (after their delay) and expires them. A client that reconnects to another node first keeps its session and no will goes. A node cut off from NATS this long while its clients stay connected is taken as dead too: it gives its sessions up when it is back, so keep it well above the time a node takes to move to another NATS server (about 10 s, docs/CLUSTER.md \"Faults\"). 0: never (a dead node's sessions wait for it) (docs/CLUSTER.md \"A node that died\")." },
	{ "cluster.session_tombstone_ms", T_U32, C(cluster_session_tombstone_ms), 0, 0, 2592000000u, "3600000",
	  "A session that ended stays in KZ_SESSIONS as a tombstone (its epoch is still known to nodes that read the bucket late) and is purged after this long, only if nothing was written to it since. 0: kept for ever." },
	{ "cluster.on_quorum_loss", T_STR, C(cluster_on_quorum_loss), S(cluster_on_quorum_loss), 0, 0, "refuse",
	  "refuse: while JetStream has no quorum, QoS 1/2 publishes are refused (0x97, \"cluster has no JetStream quorum\"), QoS 0 and reading go on. local: they are acknowledged once on this node's disk and replicated when the quorum returns." },
	{ "policy.open", T_U32, C(policy_open), 0, 0, 1, "0",
	  "1: without policy.file every authenticated identity may connect, publish and subscribe and records carry no label (for tests and benchmarks; logged as a warning, /healthz says degraded). 0: deny by default." },
	{ "policy.registry", T_STR, C(policy_registry), S(policy_registry), 0, 0, "none",
	  "The identity registry (docs/POLICY.md): one line per SPIFFE ID with its organisation, nation, clearance, caveats and roles. Required with policy.file; reloaded with it." },
	{ "policy.signing_key", T_STR, C(policy_signing_key), S(policy_signing_key), 0, 0, "none",
	  "The ML-DSA-65 public key (hex, from `kizuna policy keygen`) that must have signed policy.file and policy.registry (FILE.sig, `kizuna policy sign`). When set, a policy or registry without a valid signature is refused at start and on reload, and the running policy stays." },
	{ "policy.audit_summary_ms", T_U32, C(policy_summary_ms), 0, 100, 86400000, "10000",
	  "Allowed deliveries and allowed publishes are written to the audit log as one summary entry per session per interval, with their count (denials are written one by one, repeats counted)." },
	{ "tick_ms", T_U32, C(tick_ms), 0, 10, 10000, "250",
	  "Timer granularity for keep alive, will delay and session expiry checks." },
	{ "limits.max_packet_size", T_U32, L(max_packet_size), 0, 64, MQTT_MAX_PACKET_WIRE, "1048576",
	  "Largest MQTT packet accepted, in bytes (advertised as Maximum Packet Size). Larger: DISCONNECT 0x95." },
	{ "limits.max_topic_len", T_U32, L(max_topic_len), 0, 1, 65535, "1024",
	  "Longest topic name or filter, in bytes. Longer: 0x90 / 0x8F." },
	{ "limits.max_topic_levels", T_U32, L(max_topic_levels), 0, 1, 1024, "32",
	  "Most '/'-separated levels in a topic or filter." },
	{ "limits.max_subs_per_client", T_U32, L(max_subs_per_client), 0, 1, 1000000, "1000",
	  "Subscriptions per session; more are refused with SUBACK 0x97 Quota exceeded." },
	{ "mqtt.origin_property", T_U32, L(origin_property), 0, 0, 1, "0",
	  "1: every MQTT 5 delivery carries the user property kz-origin, the publisher's SPIFFE ID as its certificate said (also for replayed and followed records; the console's Live traffic shows it). A kz-origin sent by a client is never forwarded. 0: none (subscribers see who published only through the record log)." },
	{ "limits.max_inflight", T_U16, L(max_inflight), 0, 1, 65535, "64",
	  "In-flight QoS 1/2 window each way: our Receive Maximum and the cap on unacknowledged messages we send." },
	{ "limits.max_queued_msgs", T_U32, L(max_queued_msgs), 0, 1, 100000000, "10000",
	  "Messages queued per session (offline or window full). When full, new messages for that session are dropped, counted and logged once per overflow episode." },
	{ "limits.read_budget", T_U32, C(read_budget), 0, 1024, 1u << 30, "65536",
	  "Bytes read from one connection per event-loop iteration before the others get their turn (a flooding client cannot starve its worker)." },
	{ "limits.max_write_backlog", T_U32, C(write_backlog), 0, 16384, 1u << 30, "1048576",
	  "Bytes of output to one client waiting for the kernel above which the node stops reading from it, until half of it has drained (a client that does not read cannot make the node queue answers without bound)." },
	{ "limits.max_store_backlog", T_U64, L(max_store_backlog), 0, 4096, UINT64_MAX, "67108864",
	  "Bytes of accepted records waiting for the store thread above which the node stops reading from publishers (any QoS), until half of it is written: a flood faster than the disk slows the publishers instead of growing memory." },
	{ "limits.max_route_backlog", T_U64, L(max_route_backlog), 0, 0, UINT64_MAX, "16777216",
	  "Bytes of messages handed to other worker threads for their subscribers and not yet delivered, above which the node stops reading from publishers until half of it is delivered: a flood faster than the subscribers' workers slows the publishers instead of growing memory. 0: no cap." },
	{ "limits.max_queued_bytes", T_U64, L(max_queued_bytes), 0, 1024, UINT64_MAX, "67108864",
	  "Bytes queued per session; same overflow behaviour as max_queued_msgs." },
	{ "limits.max_connections", T_U32, L(max_connections), 0, 1, 10000000, "100000",
	  "Open MQTT connections per node. Over it, CONNECT gets 0x89 Server busy; far over it, sockets are closed at accept." },
	{ "limits.connect_timeout_ms", T_U32, L(connect_timeout_ms), 0, 100, 3600000, "10000",
	  "Time from TCP accept to a CONNECT packet before the connection is closed." },
	{ "limits.max_unconnected_per_identity", T_U32, L(max_unconnected_per_identity), 0, 0, 10000000, "64",
	  "MQTT connections of one identity (client certificate) that have sent no CONNECT for 2 s after their handshake, node-wide (each worker thread holds its share). Beyond it the oldest are closed at the next tick; a CONNECT waiting for order across a cluster failover does not count. 0: no cap." },
	{ "limits.max_publish_rate", T_U32, L(max_publish_rate), 0, 0, UINT32_MAX, "0",
	  "PUBLISH packets per second per client; over it: DISCONNECT 0x96 Message rate too high. 0 = no limit." },
	{ "limits.max_keepalive", T_U16, L(max_keepalive), 0, 0, 65535, "0",
	  "Largest Keep Alive granted to MQTT 5 clients (sent as Server Keep Alive); 0 = the client's value." },
	{ "limits.max_session_expiry", T_U32, L(max_session_expiry), 0, 0, UINT32_MAX, "604800",
	  "Longest Session Expiry Interval granted, in seconds. MQTT 3.1.1 persistent sessions get this too." },
	{ "limits.topic_alias_max", T_U16, L(topic_alias_max), 0, 0, 65535, "16",
	  "Topic aliases a client may use towards the node (Topic Alias Maximum)." },
	{ "limits.max_out_buffer", T_U32, L(max_out_buffer), 0, 4096, UINT32_MAX, "4194304",
	  "Bytes of output pending per connection, counting MQTT packets, TLS records and writes the kernel has not taken. Above it QoS 0 messages to that client are dropped (counted per client in /metrics) and QoS 1/2 wait in the session's bounded queue." },
	{ "limits.handshake_timeout_ms", T_U32, L(handshake_timeout_ms), 0, 100, 600000, "10000",
	  "A connection must finish its TLS handshake this long after it was accepted, or it is closed (MQTT and enrolment; the HTTPS listener uses the same value). MQTT's own limits.connect_timeout_ms follows it." },
	{ "limits.max_handshakes", T_U32, L(max_handshakes), 0, 0, 1000000, "4096",
	  "Connections still in their TLS handshake, node-wide, on each listener (MQTT and enrolment; HTTPS). Beyond it the oldest such connection is closed. 0: no cap." },
	{ "limits.max_handshakes_per_address", T_U32, L(max_handshakes_per_address), 0, 0, 1000000, "256",
	  "Of those, from one source address (each worker thread holds its share). Beyond it the oldest handshake from that address is closed. 0: no cap." },
	{ "limits.close_linger_ms", T_U32, L(close_linger_ms), 0, 100, 600000, "5000",
	  "A closing connection whose peer does not take its last bytes (the DISCONNECT, close_notify) is closed hard after this long." },
	{ "limits.fd_reserve", T_U32, L(fd_reserve), 0, 0, 100000, "64",
	  "File descriptors kept free of connections for the node's own files (log segments, index, audit). When a new connection would take one of them the node stops accepting for a back-off period (logged once, counted in /metrics) and keeps serving its clients. The node raises its soft descriptor limit to the hard limit at start and logs it." },
	{ "limits.slow_client_ms", T_U32, L(slow_client_ms), 0, 0, 86400000, "30000",
	  "A client whose output stays over limits.max_out_buffer this long (it does not read) is disconnected: MQTT 5 DISCONNECT 0x97 Quota exceeded with a reason. 0: never." },
	{ "limits.max_retained", T_U32, L(max_retained), 0, 0, UINT32_MAX, "100000",
	  "Retained messages per node; a new retained topic over the cap is delivered but not retained (PUBACK 0x97)." },
	{ "limits.max_client_id_len", T_U32, L(max_client_id_len), 0, 1, 65535, "256",
	  "Longest client identifier, in bytes; longer: CONNACK 0x85." },
};

static int set_value(struct node_config *cfg, const struct directive *d, const char *v,
		     const char **why)
{
	uint8_t *base = (uint8_t *)cfg + d->offset;
	if (d->type == T_STR || d->type == T_ADDR) {
		if (strlen(v) >= d->size) {
			*why = "value too long";
			return -1;
		}
		if (d->type == T_ADDR) {
			char host[256];
			int port;
			if (node_config_split_addr(v, host, sizeof host, &port)) {
				*why = "expected host:port with a port in 0..65535";
				return -1;
			}
		}
		strcpy((char *)base, v);
		return 0;
	}
	if (d->type == T_FSYNC) {
		struct node_store *st = (struct node_store *)(void *)base;
		if (strcmp(v, "always") == 0) {
			st->fsync = KZ_FSYNC_ALWAYS;
			return 0;
		}
		if (strcmp(v, "never") == 0) {
			st->fsync = KZ_FSYNC_NEVER;
			return 0;
		}
		char *end = NULL;
		errno = 0;
		unsigned long ms = strncmp(v, "interval:", 9) == 0 && isdigit((unsigned char)v[9]) ?
				   strtoul(v + 9, &end, 10) : 0;
		if (!end || *end || errno || ms < 1 || ms > 3600000) {
			*why = "expected always, never or interval:<ms> with 1..3600000 ms";
			return -1;
		}
		st->fsync = KZ_FSYNC_INTERVAL;
		st->fsync_interval_ms = (uint32_t)ms;
		return 0;
	}
	if (d->type == T_RULE) {
		struct node_store *st = (struct node_store *)(void *)base;
		if (st->n_rules == NODE_MAX_RULES) {
			*why = "too many retention rules (at most 64)";
			return -1;
		}
		if (node_config_parse_rule(v, &st->rules[st->n_rules], why))
			return -1;
		st->n_rules++;
		return 0;
	}
	if (d->type == T_IDLIMIT) {
		if (cfg->n_id_limits == NODE_MAX_RULES) {
			*why = "too many limits.identity lines (at most 64)";
			return -1;
		}
		if (kz_idlimit_rule_parse(v, &cfg->id_limits[cfg->n_id_limits], why))
			return -1;
		cfg->n_id_limits++;
		return 0;
	}
	if (d->type == T_LOGLEVEL) {
		if (kz_log_level_parse(v, (enum kz_log_level *)(void *)base)) {
			*why = "expected error, warn, info or debug";
			return -1;
		}
		return 0;
	}
	if (!isdigit((unsigned char)v[0])) {
		*why = "expected a non-negative integer";
		return -1;
	}
	errno = 0;
	char *end;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || *end) {
		*why = "expected a non-negative integer";
		return -1;
	}
	if (x < d->min || x > d->max) {
		*why = "value out of range";
		return -1;
	}
	switch (d->type) {
	case T_U16: { uint16_t y = (uint16_t)x; memcpy(base, &y, 2); break; }
	case T_U32: { uint32_t y = (uint32_t)x; memcpy(base, &y, 4); break; }
	case T_U64: { uint64_t y = x; memcpy(base, &y, 8); break; }
	case T_UINT: { unsigned y = (unsigned)x; memcpy(base, &y, sizeof y); break; }
	default: break;
	}
	return 0;
}

void node_config_default(struct node_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	mqtt_limits_default(&cfg->limits);
	const char *why;
	for (size_t i = 0; i < KZ_ARRAY_LEN(directives); i++) {
		const struct directive *d = &directives[i];
		if (strncmp(d->def, "DIR/", 4) == 0 || strncmp(d->def, "the ", 4) == 0 || d->type == T_RULE ||
		    d->type == T_IDLIMIT ||
		    strcmp(d->def, "none") == 0)
			continue; /* derived in node_config_finish */
		(void)set_value(cfg, d, d->def, &why);
	}
	cfg->log_level = KZ_LOG_INFO;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

int node_config_load(struct node_config *cfg, const char *path, FILE *err)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(err, "%s:0: cannot open: %s\n", path, strerror(errno));
		return 1;
	}
	char line[4096];
	int lineno = 0, errors = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			fprintf(err, "%s:%d: line longer than %zu bytes\n", path, lineno, sizeof line - 1);
			errors++;
			int ch;
			while ((ch = fgetc(f)) != EOF && ch != '\n')
				;
			continue;
		}
		char *s = trim(line);
		if (!*s || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		char *hash = strchr(s, '#');
		if (!eq || (hash && hash < eq)) {
			fprintf(err, "%s:%d: expected 'key = value'\n", path, lineno);
			errors++;
			continue;
		}
		*eq = 0;
		char *key = trim(s);
		const struct directive *d = NULL;
		for (size_t i = 0; i < KZ_ARRAY_LEN(directives); i++)
			if (strcmp(directives[i].name, key) == 0)
				d = &directives[i];
		if (!d) {
			fprintf(err, "%s:%d: unknown directive '%s'\n", path, lineno, key);
			errors++;
			continue;
		}
		/* '#' starts a comment, except in retention rules, where it is the MQTT
		 * multi-level wildcard: comment those on a line of their own. */
		if (d->type != T_RULE && (hash = strchr(eq + 1, '#')) != NULL)
			*hash = 0;
		char *val = trim(eq + 1);
		const char *why = NULL;
		if (set_value(cfg, d, val, &why)) {
			fprintf(err, "%s:%d: %s: %s ('%s')\n", path, lineno, key, why, val);
			errors++;
		} else if (strcmp(key, "audit.max_file_bytes") == 0 && cfg->audit_max_file_bytes &&
			   cfg->audit_max_file_bytes < 65536) {
			/* every rotation writes a signed checkpoint of about 7 kB (ML-DSA-65) */
			fprintf(err, "%s:%d: %s: 0 (never rotate) or at least 65536 ('%s')\n", path, lineno, key, val);
			errors++;
		}
	}
	fclose(f);
	/* in a cluster, a CONNECT held for the order across a failover must be answered before
	 * the connection is closed for not having finished its CONNECT (a single node holds none) */
	if (cfg->cluster_nats[0] && cfg->cluster_failover_order_ms &&
	    cfg->cluster_failover_order_ms >= cfg->limits.connect_timeout_ms) {
		fprintf(err, "%s: cluster.failover_order_ms (%u) must be below limits.connect_timeout_ms (%u): a CONNECT "
			"held that long is closed unanswered\n", path, cfg->cluster_failover_order_ms,
			cfg->limits.connect_timeout_ms);
		errors++;
	}
	return errors;
}

int node_config_for_command(struct node_config *cfg, const char *config, const char *data, FILE *err)
{
	node_config_default(cfg);
	if (config && node_config_load(cfg, config, err) > 0)
		return 1;
	if (data)
		snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", data);
	return 0;
}

void node_config_finish(struct node_config *cfg)
{
	if (!cfg->node_id[0] && gethostname(cfg->node_id, sizeof cfg->node_id - 1) != 0)
		strcpy(cfg->node_id, "kizuna");
	if (!cfg->tls_ca[0])
		snprintf(cfg->tls_ca, sizeof cfg->tls_ca, "%s/pki/ca.pem", cfg->data_dir);
	if (!cfg->tls_cert[0])
		snprintf(cfg->tls_cert, sizeof cfg->tls_cert, "%s/pki/server.pem", cfg->data_dir);
	if (!cfg->tls_key[0])
		snprintf(cfg->tls_key, sizeof cfg->tls_key, "%s/pki/server.key", cfg->data_dir);
	if (!cfg->tls_crl[0])
		snprintf(cfg->tls_crl, sizeof cfg->tls_crl, "%s/pki/crl.pem", cfg->data_dir);
	if (!cfg->ca_dir[0])
		snprintf(cfg->ca_dir, sizeof cfg->ca_dir, "%s/pki", cfg->data_dir);
	char dp[1200], di[1200];
	snprintf(dp, sizeof dp, "%s/dev.policy", cfg->ca_dir);
	snprintf(di, sizeof di, "%s/dev.identities", cfg->ca_dir);
	if (!cfg->policy_file[0] && !cfg->policy_registry[0] && !cfg->policy_open && access(dp, R_OK) == 0 &&
	    access(di, R_OK) == 0) {
		snprintf(cfg->policy_file, sizeof cfg->policy_file, "%.1000s", dp);
		snprintf(cfg->policy_registry, sizeof cfg->policy_registry, "%.1000s", di);
	}
	if (!cfg->taxii_collections[0])
		snprintf(cfg->taxii_collections, sizeof cfg->taxii_collections, "%s/taxii-collections.json", cfg->data_dir);
	if (cfg->threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		cfg->threads = n > 0 ? (unsigned)n : 1;
	}
}

/* A number with an optional one-letter unit: no unit scales by mult[0], units[i] by
 * mult[i + 1]. */
static int parse_scaled(const char *s, size_t n, const char *units, const uint64_t *mult, uint64_t *out)
{
	if (n == 0 || !isdigit((unsigned char)s[0]))
		return -1;
	uint64_t x = 0;
	size_t i = 0;
	for (; i < n && isdigit((unsigned char)s[i]); i++) {
		if (x > (UINT64_MAX - 9) / 10)
			return -1;
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	uint64_t m = mult[0];
	if (i < n) {
		const char *u = i + 1 == n && s[i] ? strchr(units, s[i]) : NULL;
		if (!u)
			return -1;
		m = mult[u - units + 1];
	}
	if (x > UINT64_MAX / m)
		return -1;
	*out = x * m;
	return 0;
}

int node_config_parse_rule(const char *text, struct kz_retention_rule *rule, const char **why)
{
	static const uint64_t dur_mult[] = { 1000000000ull, 1000000000ull, 60000000000ull, 3600000000000ull,
					     86400000000000ull };
	static const uint64_t size_mult[] = { 1, 1, 1ull << 10, 1ull << 20, 1ull << 30, 1ull << 40 };
	memset(rule, 0, sizeof *rule);
	const char *p = text;
	size_t n = strcspn(p, " \t");
	if (n == 0 || n >= sizeof rule->filter) {
		*why = "expected a topic filter first";
		return -1;
	}
	memcpy(rule->filter, p, n);
	const char *fwhy;
	struct mqtt_topic_limits tl = { sizeof rule->filter - 1, 1024 };
	if (mqtt_topic_filter_check((const uint8_t *)rule->filter, n, &tl, &fwhy)) {
		*why = "the first word is not a valid MQTT topic filter";
		return -1;
	}
	p += n;
	bool any = false;
	for (;;) {
		p += strspn(p, " \t");
		if (!*p)
			break;
		n = strcspn(p, " \t");
		const char *eq = memchr(p, '=', n);
		if (!eq) {
			*why = "expected key=value after the filter";
			return -1;
		}
		size_t kl = (size_t)(eq - p), vl = n - kl - 1;
		const char *val = eq + 1;
		if (kl == 7 && !memcmp(p, "max_age", 7)) {
			if (parse_scaled(val, vl, "smhd", dur_mult, &rule->max_age_ns) || !rule->max_age_ns) {
				*why = "max_age: expected a positive duration such as 90s, 30m, 24h or 7d";
				return -1;
			}
		} else if (kl == 9 && !memcmp(p, "max_bytes", 9)) {
			if (parse_scaled(val, vl, "BKMGT", size_mult, &rule->max_bytes) || !rule->max_bytes) {
				*why = "max_bytes: expected a positive size such as 512K, 100M or 10G";
				return -1;
			}
		} else if (kl == 9 && !memcmp(p, "keep_last", 9)) {
			static const uint64_t one[] = { 1 };
			if (parse_scaled(val, vl, "", one, &rule->keep_last) || !rule->keep_last) {
				*why = "keep_last: expected a positive number of records";
				return -1;
			}
		} else if (kl == 4 && !memcmp(p, "qos0", 4)) {
			if (vl == 4 && !memcmp(val, "skip", 4))
				rule->no_qos0 = true;
			else if (!(vl == 5 && !memcmp(val, "store", 5))) {
				*why = "qos0: expected store or skip";
				return -1;
			}
		} else {
			*why = "unknown rule key (max_age, max_bytes, keep_last, qos0)";
			return -1;
		}
		any = true;
		p += n;
	}
	if (!any) {
		*why = "a rule needs at least one of max_age, max_bytes, keep_last, qos0";
		return -1;
	}
	return 0;
}

int node_config_split_addr(const char *addr, char *host, size_t host_len, int *port)
{
	const char *colon;
	const char *h = addr;
	size_t hl;
	if (addr[0] == '[') {
		const char *rb = strchr(addr, ']');
		if (!rb || rb[1] != ':')
			return KZ_EINVAL;
		h = addr + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return KZ_EINVAL;
		hl = (size_t)(colon - addr);
	}
	if (hl == 0 || hl >= host_len)
		return KZ_EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || p < 0 || p > 65535)
		return KZ_EINVAL;
	*port = (int)p;
	return KZ_OK;
}

void node_config_print_help(FILE *out, int as_man)
{
	for (size_t i = 0; i < KZ_ARRAY_LEN(directives); i++) {
		const struct directive *d = &directives[i];
		if (as_man)
			fprintf(out, ".TP\n.B %s\n(default: %s) %s\n", d->name, d->def, d->doc);
		else
			fprintf(out, "  %-28s default %s\n      %s\n", d->name, d->def, d->doc);
	}
}

const char node_deny_all_policy[] =
	"policy deny-by-default\nversion none\nlevels unclassified\ndefault-label class=unclassified\n";

static int write_new(const char *path, const char *text, char *why, size_t why_len)
{
	FILE *f = fopen(path, "wx");
	if (!f || fputs(text, f) < 0 || fclose(f)) {
		snprintf(why, why_len, "cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int node_dev_policy_create(const struct node_config *cfg, char *why, size_t why_len)
{
	char p[1200], r[1200], text[4096];
	snprintf(p, sizeof p, "%s/dev.policy", cfg->ca_dir);
	snprintf(r, sizeof r, "%s/dev.identities", cfg->ca_dir);
	const char *o = cfg->org;
	snprintf(text, sizeof text,
		 "# The development policy, made with the development PKI by `kizuna serve` (docs/POLICY.md).\n"
		 "# Deny by default: only identities of organisation %s listed in dev.identities (beside\n"
		 "# this file) may connect, publish and subscribe anywhere, use TAXII and task any agent\n"
		 "# of the organisation; /metrics and $SYS need the role monitor.\n"
		 "# Add an identity to dev.identities, then `kizuna policy reload --data DIR`.\n"
		 "policy dev\nversion dev-1\nlevels unclassified restricted confidential secret top-secret\n"
		 "default-label class=unclassified\n"
		 "allow connect where org=%s\n"
		 "allow publish,subscribe # where org=%s\n"
		 "allow publish,subscribe " KZ_TOPIC_TAXII "/# where org=%s\n"
		 "allow subscribe $SYS/# where org=%s role=monitor\n"
		 "allow task * where org=%s agent org=%s\n", o, o, o, o, o, o, o);
	if (write_new(p, text, why, why_len))
		return -1;
	snprintf(text, sizeof text,
		 "# The development registry: identities and their attributes (docs/POLICY.md).\n"
		 "spiffe://%s/%s/user/admin org=%s clearance=top-secret roles=admin,monitor\n"
		 "# the adapters' records (adapter.ais.*, adapter.adsb.*, docs/ADAPTERS.md)\n"
		 "spiffe://%s/%s/service/ais-adapter org=%s clearance=unclassified\n"
		 "spiffe://%s/%s/service/adsb-adapter org=%s clearance=unclassified\n"
		 "# the node itself: detection's sightings (detect.*, docs/DETECTION.md), whatever their label\n"
		 "spiffe://%s/%s/node/%s org=%s clearance=top-secret\n",
		 cfg->trust_domain, o, o, cfg->trust_domain, o, o, cfg->trust_domain, o, o, cfg->trust_domain, o,
		 cfg->node_id, o);
	return write_new(r, text, why, why_len);
}

bool node_dev_mode(const struct node_config *cfg)
{
	char ca[1200], key[1200];
	snprintf(ca, sizeof ca, "%s/pki/ca.pem", cfg->data_dir);
	snprintf(key, sizeof key, "%s/pki/ca.key", cfg->data_dir);
	/* the default CA with its key beside it, or none yet (the node makes it at start) */
	return strcmp(cfg->tls_ca, ca) == 0 && (access(key, R_OK) == 0 || access(ca, F_OK) != 0);
}

unsigned long long node_policy_seq(const struct node_config *cfg)
{
	char p[1200];
	snprintf(p, sizeof p, "%s/policy.seq", cfg->data_dir);
	unsigned long long v = 0;
	FILE *f = fopen(p, "r");
	if (f) {
		if (fscanf(f, "%llu", &v) != 1)
			v = ULLONG_MAX; /* unreadable: nothing signed passes until an operator looks */
		fclose(f);
	}
	return v;
}

int node_policy_seq_store(const struct node_config *cfg, unsigned long long seq)
{
	char line[32];
	int n = snprintf(line, sizeof line, "%llu\n", seq);
	return kz_file_replace(cfg->data_dir, "policy.seq", line, (size_t)n, 0644);
}

int node_policy_load(const struct node_config *cfg, unsigned gen, struct kz_policy **out, FILE *err,
		     unsigned long long *seq_out)
{
	*out = NULL;
	if (cfg->policy_signing_key[0]) {
		/* one signed manifest names both files (no mixing) and a sequence number that may
		 * never go back (no rollback): docs/POLICY.md "Signed policies" */
		char why[4600];
		unsigned long long seq = 0, hwm = node_policy_seq(cfg);
		if (kz_manifest_verify(cfg->policy_signing_key, cfg->policy_file, cfg->policy_registry, &seq, why,
				       sizeof why)) {
			fprintf(err, "%s\n", why);
			return 1;
		}
		if (seq < hwm) {
			fprintf(err, "%s.manifest: sequence %llu is older than %llu already in force on this node: refused "
				"(a rollback to an older policy or registry)\n", cfg->policy_file, seq, hwm);
			return 1;
		}
		if (seq_out)
			*seq_out = seq;
	} else if (!node_dev_mode(cfg)) {
		fprintf(err, "%s: policy.signing_key is required outside development mode (a node on its own development "
			"PKI): sign the policy and registry with `kizuna policy sign` (docs/POLICY.md)\n", cfg->policy_file);
		return 1;
	}
	return kz_policy_load(cfg->policy_file, cfg->policy_registry, gen, out, err);
}

/* What `kizuna serve` says once it serves: where, and how to try it. */
void node_print_tour(const struct node_config *cfg, const char *host, int port, int https_port, int created)
{
	char abs[PATH_MAX];
	if (!realpath(cfg->data_dir, abs))
		snprintf(abs, sizeof abs, "%s", cfg->data_dir);
	const char *h = strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 ? "localhost" : host;
	if (strcmp(h, "127.0.0.1") == 0)
		h = "localhost";
	if (created)
		printf("kizuna: created a development PKI in %s/pki (CA, server and admin certificates)\n", abs);
	printf("kizuna: MQTT over TLS 1.3 (client certificate required) on %s:%d\n"
	       "  subscribe: mosquitto_sub -h %s -p %d --cafile %s/pki/ca.pem --cert %s/pki/admin.pem --key %s/pki/admin.key -V mqttv5 -t 'demo/#' -v\n"
	       "  publish:   mosquitto_pub -h %s -p %d --cafile %s/pki/ca.pem --cert %s/pki/admin.pem --key %s/pki/admin.key -V mqttv5 -t demo/hello -m 'hello, kizuna'\n"
	       "  or:        kizuna sub --data %s -t 'demo/#'   and   kizuna pub --data %s -t demo/hello -m hi\n",
	       host, port, h, port, abs, abs, abs, h, port, abs, abs, abs, cfg->data_dir, cfg->data_dir);
	if (https_port)
		printf("  console:   https://localhost:%d/ in a browser that holds your certificate: PW=... kizuna ca export-p12 "
		       "--data %s --cert %s/pki/admin.pem --key %s/pki/admin.key --out admin.p12 --password-env PW, then "
		       "import admin.p12 and %s/pki/ca.pem (docs/CONSOLE.md)\n",
		       https_port, cfg->data_dir, abs, abs, abs);
	fflush(stdout);
}
