#!/bin/bash
# Full mutual-TLS 1.3 handshakes per second against one kizuna node with the hybrid group
# X25519MLKEM768 and with classical X25519, alternating rounds in one run, then the
# ML-KEM-768 operation costs (issue 5 "Benchmarks"). Each handshake is followed by an MQTT
# CONNECT/CONNACK, so the server has verified the client certificate. The client and the
# node share the machine's cores: the server's CPU per handshake is the cleaner measure.
# Usage: bench/pq-handshake.sh [duration-seconds] [rounds] [client-threads]   (env KZ=…)
set -u
DUR=${1:-10}
ROUNDS=${2:-3}
THREADS=${3:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KZ=${KZ:-$ROOT/build/src/cli/kizuna}
D=$(mktemp -d /tmp/kz-hsbench-XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
P=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
printf 'mqtt.listen = 127.0.0.1:%s\nhttps.listen = 127.0.0.1:0\npolicy.open = 1\nlimits.identity = default connections=0 publish_rate=0 publish_bytes=0 https_rate=0\nlog_level = warn\n' "$P" > "$D/k.conf"
"$KZ" serve --config "$D/k.conf" --data "$D/var" > "$D/serve.log" 2>&1 & PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$P) 2>/dev/null && break; sleep 0.1; done
field() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "# $DUR s per run, $ROUNDS rounds, $THREADS client threads, mutual TLS 1.3 (ECDSA P-256 certificates), $(nproc) cores"
declare -A R=()
for r in $(seq "$ROUNDS"); do
	for g in X25519MLKEM768 X25519; do
		out=$("$KZ" bench handshake --data "$D/var" -h 127.0.0.1 -p "$P" --groups $g --threads "$THREADS" \
			--duration "$DUR" --broker-pid "$PID")
		echo "round $r: $out"
		R[$g]="${R[$g]:-} $(field "$out" handshakes_per_s)"; R[c$g]="${R[c$g]:-} $(field "$out" server_cpu_us_per_handshake)"
	done
done
h=$(median ${R[X25519MLKEM768]}); c=$(median ${R[X25519]}); hc=$(median ${R[cX25519MLKEM768]}); cc=$(median ${R[cX25519]})
/usr/bin/python3 -c "h,c,hc,cc=$h,$c,$hc,$cc
print('median handshakes/s: X25519MLKEM768 %.0f, X25519 %.0f, hybrid/classical %.3f; server CPU us/handshake %.1f vs %.1f'%(h,c,h/c,hc,cc))"
grep -c "TLS handshake failed" "$D/serve.log" | sed 's/^/handshakes refused by the node: /'
"$KZ" bench pqc
