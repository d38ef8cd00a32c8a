#!/bin/bash
# Hostile loads (issue 17) against kizuna, Mosquitto 2.0.11 and nats-server 2.9.10 (MQTT),
# all TLS 1.3 with client certificates from one development PKI, on loopback:
#  - a QoS 0 subscriber that never reads under a 1 KiB QoS 0 flood: peak RSS growth;
#  - N half-open connections from one address: RSS growth, and a normal client's
#    TLS + CONNECT/CONNACK time before and while they are open.
# The loads are bench/hostile.py. Usage: bench/hostile.sh [flood-seconds] [half-open]
set -u
DUR=${1:-60}
N=${2:-10000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KZ=${KZ:-$ROOT/build/src/cli/kizuna}
. "$ROOT/bench/peers.sh"
H="/usr/bin/python3 $ROOT/bench/hostile.py"
echo "# kizuna defaults: limits.max_out_buffer 4 MiB, limits.max_store_backlog 64 MiB, limits.max_route_backlog 16 MiB"
for b in "kizuna $KP $KPID" "mosquitto $MP $MPID" "nats $NP $NPID"; do
	set -- $b
	echo "== $1: stuck QoS 0 subscriber, $DUR s flood"
	$H stuck "$2" "$3" "$PKI" "$DUR" 2>&1
	echo "== $1: $N half-open connections from 127.0.0.2"
	$H halfopen "$2" "$3" "$PKI" "$N" 2>&1
done
