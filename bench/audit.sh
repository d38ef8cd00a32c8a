#!/bin/bash
# bench/audit.sh [ENTRIES]: GET /api/v1/audit (the console's audit view) on a node whose audit
# log holds ENTRIES entries (default 1,000,000, written by `kizuna bench audit` with the node's
# writer and defaults: 64 MiB files, 16 kept). Three requests, each REQS times (default 20):
#   newest    ?limit=200                               (the view as it opens)
#   deny      ?decision=deny&action=subscribe&limit=200  (a filter that matches few entries: the
#             writer summarises repeated denials, 20 in 100,000 here: read back to the start)
#   middle    ?limit=200&before=ENTRIES/2              (a page half way back)
# Prints the median and p90 time per request and the node's peak resident memory (VmHWM)
# after them. KZ_BASE=path/to/an/older/kizuna runs the same on the same log in the same run
# and prints the ratios (BENCHMARKS.md "Audit log pages").
set -eu
N=${1:-1000000}
REQS=${REQS:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KZ=${KZ:-$ROOT/build/src/cli/kizuna}
W=$(mktemp -d "${TMPDIR:-/tmp}/kz-bench-audit.XXXXXX")
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
read -r MP HP < <(/usr/bin/python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
printf 'mqtt.listen = 127.0.0.1:%s\nhttps.listen = 127.0.0.1:%s\npolicy.open = 1\n' "$MP" "$HP" > "$W/kizuna.conf"

start() { # binary
	"$1" serve --config "$W/kizuna.conf" --data "$W/var" > "$W/serve.log" 2>&1 &
	PID=$!
	for _ in $(seq 200); do
		curl -s -o /dev/null --cacert "$W/var/pki/ca.pem" --cert "$W/var/pki/admin.pem" --key "$W/var/pki/admin.key" \
			"https://localhost:$HP/healthz" && return 0
		sleep 0.1
	done
	echo "bench/audit.sh: the node did not answer"; tail -5 "$W/serve.log"; exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }

start "$KZ"  # its PKI and audit directory
stop
"$KZ" bench audit --data "$W/var" --entries "$N"
du -sh "$W/var/audit" | awk '{print "audit log: " $1}'

measure() { # binary label -> lines "label query median_ms p90_ms"
	local bin=$1 label=$2 name args
	start "$bin"
	for q in "newest limit=200" "deny decision=deny&action=subscribe&limit=200" "middle limit=200&before=$((N / 2))"; do
		read -r name args <<< "$q"
		for _ in $(seq "$REQS"); do
			curl -s -o "$W/out.json" -w '%{http_code} %{time_total}\n' --cacert "$W/var/pki/ca.pem" \
				--cert "$W/var/pki/admin.pem" --key "$W/var/pki/admin.key" "https://localhost:$HP/api/v1/audit?$args"
		done > "$W/times"
		grep -qv '^200 ' "$W/times" && { echo "bench/audit.sh: a request failed:"; head -c 300 "$W/out.json"; exit 1; }
		/usr/bin/python3 - "$W/times" "$name" <<'PY'
import sys
t = sorted(float(l.split()[1]) * 1000 for l in open(sys.argv[1]))
print("%s %.1f %.1f" % (sys.argv[2], t[len(t) // 2], t[int(len(t) * 0.9)]))
PY
	done | sed "s/^/$label /"
	echo "$label rss $(awk '/VmHWM/ {print $2 / 1024}' "/proc/$PID/status")"
	stop
}
{
	measure "$KZ" new
	[ -n "${KZ_BASE:-}" ] && measure "$KZ_BASE" base
} > "$W/results"
/usr/bin/python3 - "$W/results" <<'PY'
import sys
r = {}
for l in open(sys.argv[1]):
    f = l.split()
    r[(f[0], f[1])] = f[2:]
for q in ("newest", "deny", "middle"):
    n = r[("new", q)]
    line = "%-7s kizuna: median %7s ms, p90 %7s ms" % (q, n[0], n[1])
    if ("base", q) in r:
        b = r[("base", q)]
        line += " | base: median %7s ms, p90 %7s ms | base/kizuna %.1fx" % (b[0], b[1], float(b[0]) / float(n[0]))
    print(line)
line = "peak RSS kizuna %.0f MB" % float(r[("new", "rss")][0])
if ("base", "rss") in r:
    line += ", base %.0f MB" % float(r[("base", "rss")][0])
print(line)
PY
