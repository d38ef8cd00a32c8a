#!/bin/bash
# Durable QoS 1: publish -> PUBACK throughput and acknowledgement latency from 16
# publishers (100-byte payloads, no subscribers), MQTT 3.1.1 over TLS 1.3 with client
# certificates on loopback, against
#   kizuna  store.fsync = always       (acknowledged = fdatasync'd)
#   kizuna  store.fsync = interval:10  (acknowledged = written; synced within 10 ms)
#   Mosquitto 2.0.11, persistence on   (acknowledged from memory; the database is saved
#                                       every autosave_interval = 1800 s and at exit)
#   nats-server 2.9.10, MQTT on JetStream file storage (acknowledged once JetStream has
#                                       stored it, before an fsync; JetStream syncs every 2 min
#                                       by default in 2.9)
# in one run, and prints kizuna/peer ratios.
# Usage: bench/durable-vs-peers.sh [duration-seconds]   (env KZ=path/to/kizuna)
set -u
DUR=${1:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KZ=${KZ:-$ROOT/build/src/cli/kizuna}
MOSQ_PERSIST=1 KZ_CONF="store.fsync = always"
. "$ROOT/bench/peers.sh"
# a second kizuna with interval sync, sharing the first one's PKI
KP2=$(port)
mkdir -p "$D/var2"; cp -r "$D/var/pki" "$D/var2/"
printf 'mqtt.listen = 127.0.0.1:%s\nhttps.listen = 127.0.0.1:0\npolicy.open = 1\nlimits.identity = default connections=0 publish_rate=0 publish_bytes=0 https_rate=0\nlog_level = warn\nstore.fsync = interval:10\n' "$KP2" > "$D/kizuna2.conf"
"$KZ" serve --config "$D/kizuna2.conf" --data "$D/var2" > "$D/kizuna2.log" 2>&1 & KPID2=$!; PIDS+=($KPID2)
wait_port "$KP2" || { echo "kizuna (interval) did not start"; exit 1; }

run() { # name port pid
	local out
	out=$("$KZ" bench mqtt --data "$D/var" -h 127.0.0.1 -p "$2" -V 311 --duration "$DUR" --broker-pid "$3" \
		--pubs 16 --subs 0 --qos 1 --size 100 2>&1 | grep -v "^pubs=" | tr '\n' ' ')
	echo "$1 :: $out" >&2
	echo "$out"
}
field() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
ratio() { /usr/bin/python3 -c "a,b=float('$1' or 0),float('$2' or 0);print('%.2f'%(a/b) if b else 'n/a')"; }

echo "# durable QoS 1: 16 publishers, 100-byte payloads, window 64 each, $DUR s, TLS 1.3, loopback, $(nproc) cores"
ka=$(run "kizuna fsync=always" "$KP" "$KPID")
ki=$(run "kizuna fsync=interval:10" "$KP2" "$KPID2")
m=$(run "mosquitto persistence" "$MP" "$MPID")
n=$(run "nats jetstream" "$NP" "$NPID")
printf '%-24s %14s %12s %12s %14s  %s\n' "" acked/s ack_p50_us ack_p99_us cpu_us/msg "acknowledged means"
printf '%-24s %14s %12s %12s %14s  %s\n' "kizuna fsync=always" "$(field "$ka" acked_per_s)" "$(field "$ka" ack_us_p50)" "$(field "$ka" ack_p99)" "$(field "$ka" broker_cpu_us_per_msg)" "fdatasync'd before the PUBACK"
printf '%-24s %14s %12s %12s %14s  %s\n' "kizuna interval:10" "$(field "$ki" acked_per_s)" "$(field "$ki" ack_us_p50)" "$(field "$ki" ack_p99)" "$(field "$ki" broker_cpu_us_per_msg)" "written; fdatasync within 10 ms"
printf '%-24s %14s %12s %12s %14s  %s\n' "mosquitto persistence" "$(field "$m" acked_per_s)" "$(field "$m" ack_us_p50)" "$(field "$m" ack_p99)" "$(field "$m" broker_cpu_us_per_msg)" "in memory; saved every 1800 s"
printf '%-24s %14s %12s %12s %14s  %s\n' "nats jetstream (file)" "$(field "$n" acked_per_s)" "$(field "$n" ack_us_p50)" "$(field "$n" ack_p99)" "$(field "$n" broker_cpu_us_per_msg)" "written to JetStream, not fsync'd"
echo "kizuna(always)/nats acked: $(ratio "$(field "$ka" acked_per_s)" "$(field "$n" acked_per_s)")  kizuna(always)/mosquitto: $(ratio "$(field "$ka" acked_per_s)" "$(field "$m" acked_per_s)")  kizuna(interval)/nats: $(ratio "$(field "$ki" acked_per_s)" "$(field "$n" acked_per_s)")"
