#!/bin/bash
# Same MQTT loads against kizuna, Mosquitto 2.0.11 and nats-server 2.9.10 (its MQTT
# listener), all TLS 1.3 with client certificates from one development PKI, on loopback.
# The load generator is `kizuna bench mqtt`. Prints one line per run and kizuna/peer ratios.
# Usage: bench/mqtt-vs-peers.sh [duration-seconds]   (env KZ=path/to/kizuna)
set -u
DUR=${1:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KZ=${KZ:-$ROOT/build/src/cli/kizuna}
D=$(mktemp -d /tmp/kz-bench-XXXXXX); chmod 755 "$D"  # mosquitto drops to its own user
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

KP=$(port); MP=$(port); NP=$(port)
printf 'mqtt.listen = 127.0.0.1:%s\nlog_level = warn\n' "$KP" > "$D/kizuna.conf"
"$KZ" serve --config "$D/kizuna.conf" --data "$D/var" > "$D/kizuna.log" 2>&1 & KPID=$!; PIDS+=($KPID)
wait_port "$KP" || { echo "kizuna did not start"; exit 1; }
PKI=$D/var/pki
mkdir -p "$D/m"; cp "$PKI"/{ca.pem,server.pem,server.key} "$D/m/"; chmod 644 "$D/m/"*; chmod 755 "$D/m"
cat > "$D/mosquitto.conf" <<CONF
listener $MP 127.0.0.1
cafile $D/m/ca.pem
certfile $D/m/server.pem
keyfile $D/m/server.key
require_certificate true
tls_version tlsv1.3
persistence false
allow_anonymous true
log_dest none
CONF
mosquitto -c "$D/mosquitto.conf" > "$D/mosquitto.log" 2>&1 & MPID=$!; PIDS+=($MPID)
cat > "$D/nats.conf" <<CONF
server_name: kzbench
listen: 127.0.0.1:$(port)
jetstream { store_dir: "$D/js" }
mqtt {
  listen: 127.0.0.1:$NP
  tls { cert_file: "$PKI/server.pem", key_file: "$PKI/server.key", ca_file: "$PKI/ca.pem", verify: true, timeout: 5 }
}
CONF
nats-server -c "$D/nats.conf" > "$D/nats.log" 2>&1 & NPID=$!; PIDS+=($NPID)
wait_port "$MP" || { echo "mosquitto did not start: $(cat "$D/mosquitto.log")"; exit 1; }
wait_port "$NP" || { echo "nats-server did not start: $(cat "$D/nats.log")"; exit 1; }

run() { # name port pid version extra-args...
	local name=$1 p=$2 pid=$3 v=$4; shift 4
	local out
	out=$("$KZ" bench mqtt --data "$D/var" -h 127.0.0.1 -p "$p" -V "$v" --duration "$DUR" --broker-pid "$pid" "$@" 2>&1 | tail -1)
	echo "$name $* :: $out" >&2
	echo "$out"
}
field() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
ratio() { /usr/bin/python3 -c "a,b=float('$1' or 0),float('$2' or 0);print('%.2f'%(a/b) if b else 'n/a')"; }

echo "# load: $DUR s per run, 100-byte payloads, TLS 1.3 + client certificates, loopback, $(nproc) cores"
for load in "--pubs 4 --subs 4 --qos 0" "--pubs 4 --subs 4 --qos 1"; do
	k=$(run kizuna "$KP" "$KPID" 311 $load)
	m=$(run mosquitto "$MP" "$MPID" 311 $load)
	n=$(run nats "$NP" "$NPID" 311 $load)
	printf '%-32s %14s %14s %14s\n' "[$load]" kizuna mosquitto nats
	for f in delivered_per_s broker_cpu_us_per_msg latency_us_p50 p99; do
		printf '%-32s %14s %14s %14s   kizuna/mosquitto %s  kizuna/nats %s\n' "$f" "$(field "$k" $f)" "$(field "$m" $f)" "$(field "$n" $f)" \
			"$(ratio "$(field "$k" $f)" "$(field "$m" $f)")" "$(ratio "$(field "$k" $f)" "$(field "$n" $f)")"
	done
done
# latency at a fixed rate below every broker's maximum
for load in "--pubs 4 --subs 4 --qos 0 --rate 20000"; do
	k=$(run kizuna "$KP" "$KPID" 311 $load); m=$(run mosquitto "$MP" "$MPID" 311 $load); n=$(run nats "$NP" "$NPID" 311 $load)
	printf '%-32s %14s %14s %14s\n' "[$load]" kizuna mosquitto nats
	for f in delivered_per_s broker_cpu_us_per_msg latency_us_p50 p99 p99.9; do
		printf '%-32s %14s %14s %14s\n' "$f" "$(field "$k" $f)" "$(field "$m" $f)" "$(field "$n" $f)"
	done
done
