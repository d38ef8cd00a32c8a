#!/bin/bash
# The cost of the decision point (issue 4 "Cost"): the same MQTT loads against one kizuna
# node with and without a policy, alternating (off, on, off, on, …) so that machine noise
# hits both, then the per-operation costs from `kizuna bench policy`. The third load is QoS 0
# at a fixed 50,000 publishes/s (200,000 deliveries/s): below saturation both settings
# deliver the same, and the broker CPU per message is the steadier measure of the cost,
# where flat-out QoS 0 is dominated by the load generator fighting the broker for 2 cores.
# Every delivery under the policy passes the label check; publishes get the rule's default
# label (a record label, forwarded as the kz-label user property). Prints each run, the
# medians, on/off.
# Usage: bench/policy-cost.sh [duration-seconds] [rounds]   (env KZ=path/to/kizuna,
#        LOADS="--qos 0;--qos 1;--qos 0 --rate 50000", the loads separated by ";")
set -u
DUR=${1:-10}
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KZ=${KZ:-$ROOT/build/src/cli/kizuna}
D=$(mktemp -d /tmp/kz-polbench-XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
P=$(port)
cat > "$D/bench.policy" <<'POL'
policy bench
levels unclassified restricted confidential secret
category caveat restrictive attr=caveats cyber nuclear
category rel permissive attr=nation jpn usa
category relorg permissive attr=org dev mod
default-label class=restricted;rel=jpn
allow connect where kind=user
allow publish,subscribe bench/# where org=dev clearance>=restricted label class=restricted;rel=jpn;relorg=dev
POL
echo "spiffe://kizuna.local/dev/user/admin org=dev nation=jpn clearance=secret caveats=cyber" > "$D/identities"
printf 'mqtt.listen = 127.0.0.1:%s\nhttps.listen = 127.0.0.1:0\npolicy.open = 1\nlimits.identity = default connections=0 publish_rate=0 publish_bytes=0 https_rate=0\nlog_level = warn\n' "$P" > "$D/off.conf"
cp "$D/off.conf" "$D/on.conf"
printf 'policy.file = %s/bench.policy\npolicy.registry = %s/identities\n' "$D" "$D" >> "$D/on.conf"
start() { "$KZ" serve --config "$D/$1.conf" --data "$D/var" > "$D/$1.log" 2>&1 & PID=$!; wait_port "$P" || { echo "kizuna did not start"; cat "$D/$1.log"; exit 1; }; }
stop() { kill "$PID"; wait "$PID" 2>/dev/null; PID=; rm -rf "$D/var/log" "$D/var/index.db"* "$D/var/sessions.db"*; }
field() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "# $DUR s per run, $ROUNDS rounds, 4 publishers, 4 subscribers on bench/#, 100-byte payloads, TLS 1.3, $(nproc) cores"
IFS=";" read -r -a LOADS_A <<< "${LOADS:---qos 0;--qos 1;--qos 0 --rate 50000}"
for load in "${LOADS_A[@]}"; do
	declare -A R=()
	for r in $(seq "$ROUNDS"); do
		for mode in off on; do
			start $mode
			out=$("$KZ" bench mqtt --data "$D/var" -h 127.0.0.1 -p "$P" --pubs 4 --subs 4 $load --duration "$DUR" --broker-pid "$PID" 2>&1 | grep -v "^pubs=" | tr "\n" " ")
			stop
			v=$(field "$out" delivered_per_s); c=$(field "$out" broker_cpu_us_per_msg)
			echo "[$load] policy $mode round $r: delivered_per_s=$v broker_cpu_us_per_msg=$c"
			R[$mode]="${R[$mode]:-} $v"; R[c$mode]="${R[c$mode]:-} $c"
		done
	done
	off=$(median ${R[off]}); on=$(median ${R[on]}); coff=$(median ${R[coff]}); con=$(median ${R[con]})
	/usr/bin/python3 -c "off,on,co,cn=$off,$on,$coff,$con
print('[$load] median delivered/s: off %.0f on %.0f  on/off %.3f (%.1f%% change); broker CPU us/msg off %.3f on %.3f'%(off,on,on/off,100*(on/off-1),co,cn))"
done
"$KZ" bench policy --policy "$D/bench.policy" --registry "$D/identities" >/dev/null 2>&1 || true
echo "# per operation (fixture policy of tests/data/policy, 6 subjects x 8 labels):"
"$KZ" bench policy --policy "$ROOT/tests/data/policy/kizuna.policy" --registry "$ROOT/tests/data/policy/identities"
