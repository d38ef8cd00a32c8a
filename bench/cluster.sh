#!/bin/bash
# The cluster (docs/CLUSTER.md, issue 19 item 10): 3 nats-servers (JetStream, R3) and 3 kizuna
# nodes on this machine (scripts/cluster-up), every nats-server also with its own MQTT listener
# on the same JetStream cluster. In one run:
#   1. QoS 1 acknowledged msgs/s and ack latency, publishers spread over the 3 nodes (one
#      `kizuna bench mqtt` per node at once, MQTT 3.1.1 since nats-server's MQTT has no 5.0,
#      TLS 1.3, client certificates), against nats-server's MQTT listeners the same way.
#      kizuna acknowledges once its own log has synced AND JetStream (R3) has the record;
#      nats-server once JetStream has it (not synced: JetStream 2.9 syncs every 2 minutes).
#   2. cross-node delivery latency: publishers on node 1, subscribers on node 3, QoS 1 at
#      500 msgs/s (kizuna; then nats-server's MQTT, s1 -> s3).
#   3. clients served again after a node is killed: kill -9 node 1, then time `kizuna pub -h
#      node1,node2,node3 -q 1` to its PUBACK (connection refused, the next node, TLS,
#      CONNACK, PUBACK); node 1 restarted between rounds.
#   4. a whole machine killed: kill -9 the nats-server that leads the stream KZ_RECORDS and the
#      kizuna node beside it, then time `kizuna pub -h <the other two nodes> -q 1` to its
#      PUBACK; both restarted between rounds.
#   5. CONNECT to CONNACK latency, 200 connections one after another (bench/connect-latency.py,
#      MQTT 3.1.1, TLS handshake not counted) on node 1 and on s1's MQTT listener. Run before
#      parts 3 and 4, which kill processes.
# CPU: user+system time of all 6 processes over each run of 1.
# Usage: bench/cluster.sh [duration-seconds] [kill-rounds]   (env KZ=path/to/kizuna;
#   PARTS=12345 runs all five parts, PARTS=2 the cross-node latency only, ...; PAIRS=3 pairs of
#   runs in part 1; KEEP=1 keeps the logs; KZ_NODE_CONF="cluster.bridge_ms = 0" runs the
#   nodes without the bridge, on by default, docs/CLUSTER.md "The bridge")
set -u
DUR=${1:-10}
ROUNDS=${2:-5}
PARTS=${PARTS:-12345}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KZ=${KZ:-$ROOT/build/src/cli/kizuna}
D=$(mktemp -d /tmp/kz-bench-cluster-XXXXXX)
BASE=$("$ROOT/scripts/free-port-base" 60)
trap '"$ROOT/scripts/cluster-down" "$D" > /dev/null 2>&1; [ -n "${KEEP:-}" ] && echo "kept: $D" || rm -rf "$D"' EXIT
KZ_NATS_MQTT=1 KZ="$KZ" KZ_NODE_CONF="limits.identity = default connections=0 publish_rate=0 publish_bytes=0 https_rate=0
${KZ_NODE_CONF:-}" "$ROOT/scripts/cluster-up" "$D" "$BASE" > /dev/null || { echo "cluster-up failed"; exit 1; }
for i in 1 2 3; do
	for _ in $(seq 300); do grep -q "JetStream answers" "$D/n$i/serve.log" 2>/dev/null && break; sleep 0.1; done
done
sleep 2
P=$D/n1/pki
TLS=(--cafile "$P/ca.pem" --cert "$P/admin.pem" --key "$P/admin.key")
pids_of() { # kizuna|nats -> the pids of the nodes or the servers
	if [ "$1" = kizuna ]; then sed -n 4,6p "$D/pids"; else sed -n 1,3p "$D/pids"; fi
}
cpu_ticks() { # pid... -> the sum of utime + stime
	local t=0 p
	for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
	echo $t
}
field() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
ratio() { /usr/bin/python3 -c "a,b=float('$1' or 0),float('$2' or 0);print('%.2f'%(a/b) if b else 'n/a')"; }

# 1. acknowledged QoS 1, 6 publishers on each of the 3 nodes (18), no subscribers
spread() { # name port1 port2 port3 -> "acked/s p50 p99 cpu_us_per_msg"
	local name=$1; shift
	local pids c0 c1 k0 k1 k
	pids="$(pids_of kizuna) $(pids_of nats)" # the whole cluster: kizuna's records go through JetStream too
	c0=$(cpu_ticks $pids)
	k0=$(cpu_ticks $(pids_of kizuna))
	for k in 0 1 2; do
		"$KZ" bench mqtt -h 127.0.0.1 -p "${@:$((k + 1)):1}" "${TLS[@]}" -V 311 --duration "$DUR" --pubs 6 --subs 0 \
			--qos 1 --size 100 --threads 1 --topic "b$k" > "$D/$name-$k.out" 2>&1 &
	done
	wait
	c1=$(cpu_ticks $pids)
	k1=$(cpu_ticks $(pids_of kizuna))
	/usr/bin/python3 - "$D" "$name" "$DUR" "$((c1 - c0))" "$(getconf CLK_TCK)" "$((k1 - k0))" <<'PY'
import sys, re
d, name, dur, ticks, hz = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
kticks = int(sys.argv[6])
acked, p50, p99 = 0.0, [], []
for k in range(3):
    t = open("%s/%s-%d.out" % (d, name, k)).read()
    kv = dict(re.findall(r"(\w+)=([\d.]+)", t))
    acked += float(kv.get("acked_per_s", 0))
    p50.append(float(kv.get("ack_us_p50", 0)))
    p99.append(float(kv.get("ack_p99", 0)))
# the CPU over the whole run (1 s warm-up included) per message acknowledged in the measured part
cpu = ticks / hz * 1e6 / (acked * dur) if acked else 0
# the share of it in the 3 kizuna nodes (0 for nats-server's own MQTT, where they are idle)
kcpu = kticks / hz * 1e6 / (acked * dur) if acked else 0
print("%.0f %.0f %.0f %.1f %.1f" % (acked, max(p50), max(p99), cpu, kcpu if name == "kizuna" else cpu - kcpu))
PY
}
echo "# cluster: 3 nats-servers 2.9 (JetStream R3) + 3 kizuna nodes, loopback, $(nproc) cores, $DUR s per run"
# every node's follower caught up with the stream, so that what comes next (nats-server's run of
# part 1, part 2) measures a path, not kizuna's backlog, and has the machine to itself
alive() { # every process of the cluster still running? Says which one is not, and its log's end
	local k p name
	for k in 1 2 3 4 5 6; do
		p=$(sed -n "${k}p" "$D/pids")
		if ! kill -0 "$p" 2>/dev/null; then
			if [ "$k" -le 3 ]; then name=s$k; else name=n$((k - 3)); fi
			echo "# $name (pid $p) is not running; the end of its log:"
			tail -15 "$D/$name/$( [ "$k" -le 3 ] && echo nats.log || echo serve.log)" | sed 's/^/#   /'
			return 1
		fi
	done
}
caught_up() {
	local i st
	alive || return 1
	for _ in $(seq 120); do
		st=""
		for i in 1 2 3; do
			st+=$("$KZ" cluster status --config "$D/n$i/kizuna.conf" 2>/dev/null | grep -c " 0 messages behind")
		done
		[ "$st" = "111" ] && return 0
		sleep 1
	done
	echo "# (followers still behind after 120 s)"
}
if [[ $PARTS == *1* ]]; then
# PAIRS alternated runs of each (default 3): this VM's speed drifts by tens of per cent between
# minutes, so each kizuna run is paired with a nats-server run right after it, and the medians
# are compared
echo "# 1. QoS 1, 18 publishers (6 per node), 100-byte payloads, window 64, MQTT 3.1.1 over TLS 1.3"
printf '%-34s %10s %12s %12s %16s %14s\n' "" acked/s ack_p50_us ack_p99_us cpu_us/msg of_it_in
KS=() NS=()
for _ in $(seq "${PAIRS:-3}"); do
	K=$(spread kizuna $((BASE + 30)) $((BASE + 31)) $((BASE + 32)))
	caught_up
	N=$(spread nats $((BASE + 50)) $((BASE + 51)) $((BASE + 52)))
	printf '%-34s %10s %12s %12s %16s %14s\n' "kizuna (own fsync + JetStream R3)" $K
	printf '%-34s %10s %12s %12s %16s %14s\n' "nats-server MQTT (JetStream R3)" $N
	echo "  this pair, kizuna/nats acked: $(ratio "$(echo $K | cut -d' ' -f1)" "$(echo $N | cut -d' ' -f1)")"
	KS+=("$(echo $K | cut -d' ' -f1)") NS+=("$(echo $N | cut -d' ' -f1)")
done
med() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
echo "median acked/s: kizuna $(med "${KS[@]}"), nats-server $(med "${NS[@]}"); kizuna/nats: $(ratio "$(med "${KS[@]}")" "$(med "${NS[@]}")")"
echo "  (p50, p99: the highest of the three load generators'; cpu: all 6 processes, per acknowledged message;"
echo "   of_it_in: the part of it in the 3 kizuna nodes, resp. in the 3 nats-servers)"
fi

caught_up
# 2. cross-node delivery, 500 msgs/s QoS 1, 4 publishers on node 1, 4 subscribers on node 3
cross() { # label pub-port sub-port
	"$KZ" bench mqtt -h 127.0.0.1 -p "$2" --sub-port "$3" "${TLS[@]}" -V 311 --duration "$DUR" --pubs 4 --subs 4 \
		--qos 1 --rate 500 --size 100 --topic cross 2>&1 | tr '\n' ' '
}
if [[ $PARTS == *2* ]]; then
kc=$(cross kizuna $((BASE + 30)) $((BASE + 32)))
nc=$(cross nats $((BASE + 50)) $((BASE + 52)))
echo "# 2. cross-node delivery: 4 publishers on node 1 / s1, 4 subscribers on node 3 / s3, QoS 1, 500 msgs/s"
printf '%-34s %12s %12s %12s %12s\n' "" delivered/s p50_us p99_us p999_us
printf '%-34s %12s %12s %12s %12s\n' "kizuna node 1 -> node 3" "$(field "$kc" delivered_per_s)" "$(field "$kc" latency_us_p50)" "$(field "$kc" p99)" "$(field "$kc" p99.9)"
printf '%-34s %12s %12s %12s %12s\n' "nats-server MQTT s1 -> s3" "$(field "$nc" delivered_per_s)" "$(field "$nc" latency_us_p50)" "$(field "$nc" p99)" "$(field "$nc" p99.9)"
fi
if [[ $PARTS == *5* ]]; then
# 5. a CONNECT on an idle cluster: a node answers it once its follower has what the stream
# held when it came (docs/CLUSTER.md "Order across a failover")
echo "# 5. CONNECT -> CONNACK, 200 new TLS connections one after another, MQTT 3.1.1"
echo "kizuna node 1: $(/usr/bin/python3 "$ROOT/bench/connect-latency.py" "$P" $((BASE + 30)) 200)"
echo "nats-server s1 MQTT: $(/usr/bin/python3 "$ROOT/bench/connect-latency.py" "$P" $((BASE + 50)) 200)"
fi

if [[ $PARTS == *3* ]]; then
# 3. served again after kill -9 of node 1
echo "# 3. kill -9 node 1, then kizuna pub -h node1,node2,node3 -q 1 until its PUBACK ($ROUNDS rounds)"
times=()
for r in $(seq "$ROUNDS"); do
	n1=$(sed -n 4p "$D/pids")
	kill -9 "$n1"; wait "$n1" 2>/dev/null
	t0=$(date +%s.%N)
	"$KZ" pub -h "127.0.0.1:$((BASE + 30)),127.0.0.1:$((BASE + 31)),127.0.0.1:$((BASE + 32))" "${TLS[@]}" -q 1 \
		-t failover/x -m "round $r" > /dev/null 2>&1 || echo "round $r: pub failed"
	t1=$(date +%s.%N)
	times+=("$(/usr/bin/python3 -c "print('%.3f' % ($t1 - $t0))")")
	# node 1 again, for the next round
	"$KZ" serve --config "$D/n1/kizuna.conf" >> "$D/n1/serve.log" 2>&1 &
	sed -i "4s/.*/$!/" "$D/pids"
	for _ in $(seq 300); do [ "$(grep -c "JetStream answers" "$D/n1/serve.log")" -gt "$r" ] && break; sleep 0.1; done
	sleep 1
done
echo "served again after (s): ${times[*]}  (max $(printf '%s\n' "${times[@]}" | sort -n | tail -1))"
fi
[[ $PARTS == *4* ]] || exit 0

# 4. a machine that leads the stream killed: its nats-server and its kizuna node
leader() { # -> 1, 2 or 3: the server that leads KZ_RECORDS, from any live server's monitoring port
	local i
	for i in 1 2 3; do
		curl -s -m 2 "http://127.0.0.1:$((BASE + 19 + i))/jsz?streams=true" 2>/dev/null | /usr/bin/python3 -c '
import json, sys
try:
    j = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
for a in j.get("account_details", []):
    for st in a.get("stream_detail", []):
        if st["name"] == "KZ_RECORDS" and st.get("cluster", {}).get("leader", "").startswith("s"):
            print(st["cluster"]["leader"][1:]); sys.exit(0)
sys.exit(1)' && return 0
	done
	return 1
}
echo "# 4. kill -9 the nats-server leading the stream and the kizuna node beside it, then kizuna pub -h <the other two nodes> -q 1 until its PUBACK ($ROUNDS rounds)"
times=()
for r in $(seq "$ROUNDS"); do
	L=$(leader) || { echo "round $r: no stream leader found"; continue; }
	sp=$(sed -n "${L}p" "$D/pids") np=$(sed -n "$((L + 3))p" "$D/pids")
	kill -9 "$sp" "$np"; wait "$sp" "$np" 2>/dev/null
	t0=$(date +%s.%N)
	hosts=""
	for i in 1 2 3; do [ "$i" = "$L" ] || hosts+="${hosts:+,}127.0.0.1:$((BASE + 29 + i))"; done
	"$KZ" pub -h "$hosts" "${TLS[@]}" -q 1 -t failover/y -m "round $r" > "$D/pub4.out" 2>&1 || echo "round $r: pub failed: $(tail -1 "$D/pub4.out")"
	t1=$(date +%s.%N)
	times+=("$(/usr/bin/python3 -c "print('%.3f' % ($t1 - $t0))")")
	echo "round $r: s$L and n$L killed, a publish on the others acknowledged after ${times[-1]} s"
	# the machine back, for the next round
	nats-server -c "$D/s$L/nats.conf" >> "$D/s$L/nats.log" 2>&1 &
	sed -i "${L}s/.*/$!/" "$D/pids"
	before=$(grep -c "JetStream answers" "$D/n$L/serve.log")
	"$KZ" serve --config "$D/n$L/kizuna.conf" >> "$D/n$L/serve.log" 2>&1 &
	sed -i "$((L + 3))s/.*/$!/" "$D/pids"
	for _ in $(seq 600); do [ "$(grep -c "JetStream answers" "$D/n$L/serve.log")" -gt "$before" ] && break; sleep 0.1; done
	caught_up
	sleep 2
done
echo "served again after (s): ${times[*]}  (max $(printf '%s\n' "${times[@]}" | sort -n | tail -1))"
