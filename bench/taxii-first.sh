#!/bin/bash
# The first POST of a fresh node (BENCHMARKS.md "The first POST of a fresh node", issue 24):
# a node started afresh (store.fsync = always), then one POST of ATT&CK ICS as published, by
# curl on a new TLS connection, then a second POST of the bundle with its ids re-issued. For
# each: curl's total and TLS time, the node's Server-Timing, the process's minor page faults
# during the POST (/proc/PID/stat) and its RSS after it. With IDLE=1 instead: six GETs of
# /healthz on new connections, 2 s idle, then RSS and AnonHugePages.
# Usage: [KZ=path/to/kizuna] [IDLE=1] bench/taxii-first.sh [label]
# Alternating two binaries, as recorded:
#   for i in 1 2 3 4 5 6; do KZ=A bench/taxii-first.sh a; KZ=B bench/taxii-first.sh b; done
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KZ=${KZ:-$ROOT/build/src/cli/kizuna}
STIX=${SHARED:-$ROOT/../shared}/data/stix
L=${1:-$(basename "$KZ")}
[ -f "$STIX/ics-attack.json" ] || { echo "no $STIX/ics-attack.json"; exit 1; }
. "$ROOT/bench/taxii-node.sh"
taxii_node first
if [ "${IDLE:-0}" = 1 ]; then
	for _ in 1 2 3 4 5 6; do curl -s -o /dev/null --cacert "$D/var/pki/ca.pem" "https://localhost:$HP/healthz"; done
	sleep 2
	echo "$L idle: RSS $(awk '/VmRSS/ {print $2" kB"}' /proc/$PID/status), $(grep AnonHugePages /proc/$PID/smaps_rollup | tr -s ' ')"
	exit 0
fi
/usr/bin/python3 - "$STIX/ics-attack.json" "$W/ics2.json" <<'PY'
import json, re, sys, uuid
text = open(sys.argv[1]).read()
ids = {o["id"] for o in json.loads(text)["objects"]}
mp = {i: i.split("--")[0] + "--" + str(uuid.uuid4()) for i in ids}
open(sys.argv[2], "w").write(re.sub(r'[a-z0-9-]+--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', lambda m: mp.get(m.group(0), m.group(0)), text))
PY
sleep 1
faults() { awk '{print $10}' /proc/$PID/stat; }
for r in 1 2; do
	f=$STIX/ics-attack.json; [ $r = 2 ] && f=$W/ics2.json
	f0=$(faults)
	curl -s --cacert "$D/var/pki/ca.pem" --cert "$D/var/pki/admin.pem" --key "$D/var/pki/admin.key" \
		-H 'Content-Type: application/taxii+json;version=2.1' -H 'Accept: application/taxii+json;version=2.1' \
		--data-binary @"$f" -D "$W/head.txt" -o "$W/status.json" -w '%{time_appconnect} %{time_total}\n' \
		"https://localhost:$HP/taxii2/api/collections/$COLL/objects/" > "$W/curl.txt"
	read -r tls total < "$W/curl.txt"
	ok=$(/usr/bin/python3 -c "import json;print(json.load(open('$W/status.json'))['success_count'])")
	echo "$L POST $r: $ok objects, $(/usr/bin/python3 -c "print('%.1f ms (TLS %.1f ms) = %.0f objects/s' % ($total*1e3, $tls*1e3, $ok/$total))");" \
		"$(grep -i '^server-timing' "$W/head.txt" | tr -d '\r');" \
		"faults $(( $(faults) - f0 )); RSS $(awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' /proc/$PID/status)"
done
