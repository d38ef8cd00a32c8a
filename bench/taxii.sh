#!/bin/bash
# TAXII 2.1: import rate (validated and durable: fsync per batch) of STIX objects re-issued
# with fresh ids over ATT&CK ICS + Mobile, then page latency with limit=100 at the first page
# and deep in the collection, and concurrent readers at random depths; the node's RSS, and
# the time a restart takes to rebuild the collection index from the log.
#
# Peer: the OASIS reference server (medallion) is not packaged in Debian 12 and PyPI is not
# reachable here, so this script measures kizuna alone; the issue's figure for medallion
# (≈10,000 objects/s in memory, ≈485 ms per page with ~2,000 objects) is quoted, not re-run.
#
# Usage: bench/taxii.sh [objects] [connections]   (env KZ=path/to/kizuna, SHARED=../shared)
set -u
N=${1:-1000000}
CONNS=${2:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KZ=${KZ:-$ROOT/build/src/cli/kizuna}
SHARED=${SHARED:-$ROOT/../shared}
STIX=$SHARED/data/stix
[ -f "$STIX/ics-attack.json" ] || { echo "no $STIX/ics-attack.json"; exit 1; }
D=$(mktemp -d /tmp/kz-bench-taxii.XXXXXX)
trap 'kill $PID 2>/dev/null; wait 2>/dev/null; rm -rf "$D"' EXIT
port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
HP=$(port)
MP=$(port)
printf 'mqtt.listen = 127.0.0.1:%s\nhttps.listen = 127.0.0.1:%s\npolicy.open = 1\nlimits.identity = default connections=0 publish_rate=0 publish_bytes=0 https_rate=0\nlog_level = warn\nstore.fsync = always\n' "$MP" "$HP" > "$D/k.conf"
start() {
	"$KZ" serve --config "$D/k.conf" --data "$D/var" >> "$D/serve.log" 2>&1 & PID=$!
	for _ in $(seq 1 600); do
		curl -s -o /dev/null --cacert "$D/var/pki/ca.pem" "https://localhost:$HP/healthz" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "the node did not start"; exit 1
}
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' /proc/$PID/status; }
start
COLL=$(/usr/bin/python3 -c "import json;print(json.load(open('$D/var/taxii-collections.json'))[0]['id'])")
echo "# TAXII: $N objects (ATT&CK ICS + Mobile re-issued with fresh ids), batches of 1000, $CONNS connections,"
echo "# TLS 1.3 + HTTP/1.1 on loopback, store.fsync = always, $(nproc) cores; client and node on the same machine"
"$KZ" bench taxii --data "$D/var" --url "https://localhost:$HP" --collection "$COLL" \
	--bundle "$STIX/ics-attack.json" --bundle "$STIX/mobile-attack-17.1.json" \
	--objects "$N" --batch 1000 --connections "$CONNS" --readers 4 --pages 200 --broker-pid "$PID" 2>&1 | grep -v building
echo "node RSS after import and reads: $(rss); log on disk: $(du -sh "$D/var/log" | cut -f1)"
kill -TERM $PID; wait $PID
t0=$(date +%s.%N)
start
t1=$(date +%s.%N)
echo "restart (index rebuilt from the log) until /healthz answers: $(/usr/bin/python3 -c "print('%.1f s' % ($t1 - $t0))"), RSS $(rss)"
"$KZ" bench taxii --data "$D/var" --url "https://localhost:$HP" --collection "$COLL" \
	--bundle "$STIX/ics-attack.json" --skip-import --readers 0 --pages 200 2>&1 | grep 'page limit'
echo "targets (issue 6): import >= 50,000 objects/s; p99 page latency <= 10 ms at any depth of 1,000,000"
