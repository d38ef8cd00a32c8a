/* cli_client.h — a minimal MQTT client over the net layer, for `kizuna pub/sub/bench`. */
#ifndef CLI_CLIENT_H
#define CLI_CLIENT_H

#include "mqtt/mqtt_codec.h"
#include "net/net.h"

#include <getopt.h>

struct cli_opts {
	const char *host;
	int port;
	char ca[1024], cert[1024], key[1024];
	uint8_t version;
	const char *client_id;
	uint16_t keep_alive;
	bool clean;
	uint32_t session_expiry;
	uint8_t qos;
};

/* Parses a shared option (returns 1 when consumed, 0 when not ours, -1 on bad value). */
int cli_opts_parse(struct cli_opts *o, int opt, const char *arg);
void cli_opts_default(struct cli_opts *o);
/* Fills the TLS files not given from DATA/pki (the admin identity, said on stderr). 0, 2 for
 * --cert without --key (or the reverse), 1 when DATA is not a node's data directory; the
 * message is printed, prefixed "kizuna CMD: ". */
int cli_opts_finish(struct cli_opts *o, const char *data_dir, const char *cmd);
#define CLI_COMMON_HELP                                                                     \
	"  -h, --host HOST     node address (default localhost); pub, sub: HOST[:PORT],...\n" \
	"                      several nodes of a cluster, tried in turn, to fail over\n"    \
	"  -p, --port PORT     MQTT TLS port (default 8883)\n"                              \
	"  -d, --data DIR      take ca.pem, admin.pem, admin.key from DIR/pki (default ./var)\n" \
	"      --cafile F, --cert F, --key F   explicit TLS files\n"                       \
	"  -V, --protocol 5|311  MQTT version (default 5)\n"                               \
	"  -i, --id ID         client identifier (default: assigned by the node)\n"         \
	"  -q, --qos 0|1|2     QoS (default 0)\n"                                          \
	"  -k, --keepalive S   keep alive seconds (default 60)\n"

/* getopt_long entries for the options cli_opts_parse() handles, plus --data. */
#define CLI_COMMON_LONG                                                                  \
	{ "host", required_argument, NULL, 'h' }, { "port", required_argument, NULL, 'p' }, \
	{ "data", required_argument, NULL, 'd' }, { "cafile", required_argument, NULL, 1001 }, \
	{ "cert", required_argument, NULL, 1002 }, { "key", required_argument, NULL, 1003 }, \
	{ "protocol", required_argument, NULL, 'V' }, { "id", required_argument, NULL, 'i' }, \
	{ "qos", required_argument, NULL, 'q' }, { "keepalive", required_argument, NULL, 'k' }
#define CLI_COMMON_SHORT "h:p:d:V:i:q:k:"

struct cli_mqtt;
typedef void (*cli_packet_cb)(struct cli_mqtt *m, const struct mqtt_packet *pkt);

struct cli_mqtt {
	struct cli_opts *o;
	struct net_loop *nl;
	struct net_conn *conn;
	struct kz_buf in;
	cli_packet_cb on_packet; /* every packet after CONNACK, and CONNACK itself */
	void (*on_closed)(struct cli_mqtt *m);
	void *user;
	bool is_connected, is_closed;
	bool said_bye;           /* we sent DISCONNECT */
	char close_why[240];     /* why the connection ended, from the net layer ("" if not known) */
	uint16_t next_pid;
	uint16_t server_receive_max;
};

/* Connects and sends CONNECT; on_packet gets the CONNACK. */
int cli_mqtt_connect(struct cli_mqtt *m, struct net_loop *nl, SSL_CTX *ctx, struct cli_opts *o);
void cli_mqtt_send(struct cli_mqtt *m, const struct mqtt_packet *pkt);
/* Writes what cli_mqtt_send queued now. Sends from a timer callback need it: the loop's
 * end-of-iteration flush runs only after its next poll, which waits for I/O. */
void cli_mqtt_flush(struct cli_mqtt *m);
uint16_t cli_mqtt_pid(struct cli_mqtt *m);
void cli_mqtt_disconnect(struct cli_mqtt *m);
SSL_CTX *cli_tls_ctx(const struct cli_opts *o);
/* User + system CPU time of process pid in clock ticks (/proc/PID/stat), 0 if unknown. */
uint64_t cli_proc_cpu_ticks(int pid);

#endif
