#!/bin/bash
# A/B: the same loads against two kizuna builds (before and after a change), one node at a
# time on a fresh data directory, A and B alternating over ROUNDS rounds so that drift on
# the machine hits both alike. The load generator is B's `kizuna bench` for both. Prints
# every run, then the median of each metric per build and B/A.
# Usage: bench/ab.sh KIZUNA_A KIZUNA_B [seconds] [rounds]   (env AB_LOADS: loads separated by ';')
set -u
A=$1 B=$2 DUR=${3:-10} ROUNDS=${4:-3}
D=$(mktemp -d /tmp/kz-ab-XXXXXX)
NODE=
trap '[ -n "$NODE" ] && kill $NODE 2>/dev/null; wait 2>/dev/null; rm -rf "$D"' EXIT
port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

start() { # binary extra-conf -> sets P, NODE, DATA
	P=$(port); DATA=$D/var-$RANDOM
	printf 'mqtt.listen = 127.0.0.1:%s\nhttps.listen = 127.0.0.1:0\npolicy.open = 1\nlimits.identity = default connections=0 publish_rate=0 publish_bytes=0 https_rate=0\nlog_level = warn\n%s\n' "$P" "$2" > "$D/kizuna.conf"
	"$1" serve --config "$D/kizuna.conf" --data "$DATA" > "$D/node.log" 2>&1 & NODE=$!
	wait_port "$P" || { echo "node did not start: $(tail -3 "$D/node.log")"; exit 1; }
	sleep 0.5
}
stop() { kill "$NODE"; wait "$NODE" 2>/dev/null; NODE=; rm -rf "$DATA"; }
rss_kb() { awk '/VmRSS/ {print $2}' /proc/"$1"/status; }

LOADS=("mqtt --pubs 4 --subs 4 --qos 0" "mqtt --pubs 4 --subs 4 --qos 1" "mqtt --pubs 16 --subs 0 --qos 1" "handshake --threads 2")
if [ -n "${AB_LOADS:-}" ]; then # e.g. AB_LOADS="mqtt --pubs 16 --subs 0 --qos 1;handshake --threads 2"
	IFS=';' read -r -a LOADS <<< "$AB_LOADS"
fi
echo "# A: $A"
echo "# B: $B"
echo "# $DUR s per run, $ROUNDS rounds, A and B alternating; loopback, TLS 1.3 + client certificates, $(nproc) cores"
: > "$D/results"
for r in $(seq "$ROUNDS"); do
	for which in A B; do
		bin=${!which}
		for i in "${!LOADS[@]}"; do
			load=${LOADS[$i]}
			start "$bin" ""
			[ "$i" = 0 ] && echo "$which idle idle_rss_kb=$(rss_kb "$NODE")" >> "$D/results"
			out=$("$B" bench $load --data "$DATA" -h 127.0.0.1 -p "$P" --duration "$DUR" --broker-pid "$NODE" 2>&1 |
			      grep -v "^pubs=" | tr '\n' ' ')
			echo "round $r $which [$load] $out"
			echo "$which $i $out" >> "$D/results"
			stop
		done
	done
done
/usr/bin/python3 - "$D/results" "${LOADS[@]}" <<'PY'
import re, statistics, sys
loads = ["idle"] + sys.argv[2:]
runs = {}
for line in open(sys.argv[1]):
    w, i, rest = line.split(" ", 2)
    key = "idle" if i == "idle" else loads[int(i) + 1]
    for k, v in re.findall(r"(\w+)=([0-9.]+)", rest):
        runs.setdefault((key, k), {}).setdefault(w, []).append(float(v))
print("%-44s %-22s %14s %14s %8s" % ("load", "metric", "A (median)", "B (median)", "B/A"))
for (key, k), d in runs.items():
    if "A" not in d or "B" not in d:
        continue
    a, b = statistics.median(d["A"]), statistics.median(d["B"])
    print("%-44s %-22s %14.1f %14.1f %8s" % (key, k, a, b, "%.3f" % (b / a) if a else "n/a"))
PY
