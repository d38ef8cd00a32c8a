#!/bin/bash
# Memory held by N idle MQTT-over-TLS connections (TLS 1.3, client certificate, MQTT 3.1.1
# CONNECT/CONNACK, then silence): kizuna, Mosquitto 2.0.11 and nats-server 2.9.10 each get the
# same N connections from bench/idle-connections.py, one broker at a time.
# Usage: bench/idle-vs-peers.sh [N]   (default 10000; env KZ=path/to/kizuna)
set -u
N=${1:-10000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KZ=${KZ:-$ROOT/build/src/cli/kizuna}
ulimit -n "$(ulimit -Hn)"  # the brokers inherit it: each connection is a descriptor
. "$ROOT/bench/peers.sh"
echo "# $N idle TLS 1.3 MQTT connections per broker, loopback, $(nproc) cores"
for b in "kizuna $KP $KPID" "mosquitto $MP $MPID" "nats $NP $NPID"; do
	set -- $b
	printf '%-10s ' "$1"
	/usr/bin/python3 "$ROOT/bench/idle-connections.py" "$2" "$PKI" "$3" "$N" || echo "failed"
done
