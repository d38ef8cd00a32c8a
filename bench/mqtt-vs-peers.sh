#!/bin/bash
# Same MQTT loads against kizuna, Mosquitto 2.0.11 and nats-server 2.9.10 (its MQTT
# listener), all TLS 1.3 with client certificates from one development PKI, on loopback.
# The load generator is `kizuna bench mqtt`. Prints one line per run and kizuna/peer ratios.
# Usage: bench/mqtt-vs-peers.sh [duration-seconds]   (env KZ=path/to/kizuna)
set -u
DUR=${1:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KZ=${KZ:-$ROOT/build/src/cli/kizuna}
. "$ROOT/bench/peers.sh"

run() { # name port pid version extra-args...
	local name=$1 p=$2 pid=$3 v=$4; shift 4
	local out
	out=$("$KZ" bench mqtt --data "$D/var" -h 127.0.0.1 -p "$p" -V "$v" --duration "$DUR" --broker-pid "$pid" "$@" 2>&1 | grep -v "^pubs=" | tr "\n" " ")
	echo "$name $* :: $out" >&2
	echo "$out"
}
field() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
ratio() { /usr/bin/python3 -c "a,b=float('$1' or 0),float('$2' or 0);print('%.2f'%(a/b) if b else 'n/a')"; }

echo "# load: $DUR s per run, 100-byte payloads, TLS 1.3 + client certificates, loopback, $(nproc) cores"
for load in "--pubs 4 --subs 4 --qos 0" "--pubs 4 --subs 4 --qos 1" "--pubs 4 --subs 4 --qos 1 --window none"; do
	k=$(run kizuna "$KP" "$KPID" 311 $load)
	m=$(run mosquitto "$MP" "$MPID" 311 $load)
	n=$(run nats "$NP" "$NPID" 311 $load)
	case "$load" in *"qos 0"*) NATS_QOS0=$(field "$n" delivered_per_s) ;; esac
	printf '%-32s %14s %14s %14s\n' "[$load]" kizuna mosquitto nats
	for f in delivered_per_s broker_cpu_us_per_msg latency_us_p50 p99; do
		printf '%-32s %14s %14s %14s   kizuna/mosquitto %s  kizuna/nats %s\n' "$f" "$(field "$k" $f)" "$(field "$m" $f)" "$(field "$n" $f)" \
			"$(ratio "$(field "$k" $f)" "$(field "$m" $f)")" "$(ratio "$(field "$k" $f)" "$(field "$n" $f)")"
	done
done
# Latency at half of nats-server's maximum (its QoS 0 flat-out publish rate above), the
# issue's comparison point; and at 20,000 publishes/s, a rate Mosquitto can nearly keep.
HALF=$(/usr/bin/python3 -c "print(int(float('${NATS_QOS0:-0}' or 0) / 4 / 2))")
for rate in "$HALF" 20000; do
	[ "$rate" -gt 0 ] || continue
	load="--pubs 4 --subs 4 --qos 0 --rate $rate"
	k=$(run kizuna "$KP" "$KPID" 311 $load); m=$(run mosquitto "$MP" "$MPID" 311 $load); n=$(run nats "$NP" "$NPID" 311 $load)
	printf '%-32s %14s %14s %14s\n' "[$load]" kizuna mosquitto nats
	for f in delivered_per_s broker_cpu_us_per_msg latency_us_p50 p99 p99.9; do
		printf '%-32s %14s %14s %14s\n' "$f" "$(field "$k" $f)" "$(field "$m" $f)" "$(field "$n" $f)"
	done
done
