#!/bin/bash
# Instructions a node executes (valgrind callgrind, "Ir", without the audit log's ML-DSA
# signatures: see below) for a fixed-rate load: a measure
# that does not move with the machine's noise, for A/B checks of a change. Runs the load at
# RATE and at RATE/100 (the node's fixed costs: start-up, timers), so that the difference is
# the instructions the extra messages cost. The load generator runs natively.
# Usage: bench/instructions.sh KIZUNA [rate] [seconds] [bench mqtt options]
#   (env KEEP_CG=PREFIX keeps the callgrind files as PREFIX.<rate>, for callgrind_annotate)
#   e.g. bench/instructions.sh build/src/cli/kizuna 400 10 --pubs 4 --subs 4 --qos 1
set -u
BIN=$1 RATE=${2:-400} DUR=${3:-10}
shift 3 2>/dev/null || shift $#
OPTS=${*:---pubs 4 --subs 4 --qos 1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GEN=${KZ:-$ROOT/build/src/cli/kizuna}
command -v valgrind > /dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 77; }
run() { # rate -> prints "Ir published delivered"
	local D P N out ir
	D=$(mktemp -d /tmp/kz-ins-XXXXXX)
	P=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
	printf 'mqtt.listen = 127.0.0.1:%s\nhttps.enabled = 0\npolicy.open = 1\nlimits.identity = default connections=0 publish_rate=0 publish_bytes=0 https_rate=0\nlog_level = warn\n' "$P" > "$D/k.conf"
	# a first start makes the PKI, outside the measurement
	"$BIN" serve --config "$D/k.conf" --data "$D/var" > /dev/null 2>&1 & N=$!
	for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$P) 2>/dev/null && break; sleep 0.1; done
	kill $N; wait $N 2>/dev/null
	valgrind --tool=callgrind --callgrind-out-file="$D/cg.out" "$BIN" serve --config "$D/k.conf" --data "$D/var" > "$D/log" 2>&1 & N=$!
	for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/$P) 2>/dev/null && break; sleep 0.1; done
	sleep 1
	out=$("$GEN" bench mqtt $OPTS --rate "$1" --data "$D/var" -h 127.0.0.1 -p "$P" --duration "$DUR" 2>&1 | tr '\n' ' ')
	kill $N; wait $N 2>/dev/null
	# The audit log signs its checkpoints with ML-DSA-65, whose rejection sampling takes a
	# random number of rounds: that cost (ML-DSA and Keccak, which ML-KEM handshakes also
	# use, the same in every run) is left out, or it would swamp a small difference.
	ir=$(callgrind_annotate --threshold=100 --auto=no "$D/cg.out" 2>/dev/null | awk '
		/PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
		/kz_mldsa\.c|kz_keccak\.c/ { gsub(",", "", $1); skip += $1 }
		END { print total - skip }')
	[ -n "${KEEP_CG:-}" ] && cp "$D/cg.out" "$KEEP_CG.$1"
	echo "$ir $(echo "$out" | grep -o 'published_per_s=[0-9]*' | cut -d= -f2) $(echo "$out" | grep -o 'delivered_per_s=[0-9]*' | cut -d= -f2)"
	rm -rf "$D"
}
read -r ir1 pub1 del1 <<< "$(run "$RATE")"
read -r ir0 pub0 del0 <<< "$(run $((RATE / 100 > 0 ? RATE / 100 : 1)))"
/usr/bin/python3 - "$ir1" "$pub1" "$del1" "$ir0" "$pub0" "$del0" "$DUR" <<'PY'
import sys
ir1, pub1, del1, ir0, pub0, del0, dur = (float(x or 0) for x in sys.argv[1:])
dp, dd = (pub1 - pub0) * dur, (del1 - del0) * dur
print("load Ir=%d (published %d, delivered %d); fixed-cost run Ir=%d; per extra publish %.0f instructions "
      "(%.0f per delivery)" % (ir1, pub1 * dur, del1 * dur, ir0, (ir1 - ir0) / dp if dp else 0,
                                (ir1 - ir0) / dd if dd else 0))
PY
