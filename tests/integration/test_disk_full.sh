#!/bin/bash
# Disk full: the node's data directory on a small tmpfs that this test mounts in a mount
# namespace of its own (unshare; nothing outside the test sees it), its audit directory on a
# second one. With the store's disk filled by a ballast file, publishes are refused (MQTT 5:
# PUBACK 0x97 with a reason string; nothing unstored is acknowledged), reads keep working,
# the failure is logged once, /healthz answers 503 "failing" naming the store, and after the
# ballast is removed writing resumes by itself. With the audit's disk full, the node fails
# closed (CONNACK 0x88, /healthz 503 naming the audit) and, once it can write again, says in
# a signed gap entry how many decisions are missing: `audit verify` exits 3 (incomplete).
set -u
if [ -z "${KZ_IN_NS:-}" ]; then
	if ! unshare -rm true 2>/dev/null; then
		echo "SKIP: cannot create a mount namespace (unshare -rm)"; exit 77
	fi
	KZ_IN_NS=1 exec unshare -rm "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
KZ=$(readlink -f "$1")
D=$(mktemp -d /tmp/kz-it-XXXXXX)
mkdir -p "$D/var"
mount -t tmpfs -o size=3m tmpfs "$D/var" || { echo "SKIP: cannot mount tmpfs"; exit 77; }
mkdir -p "$D/aud"
mount -t tmpfs -o size=1m tmpfs "$D/aud" || { echo "SKIP: cannot mount tmpfs"; exit 77; }
mkdir "$D/aud/audit" && ln -s "$D/aud/audit" "$D/var/audit"
PORT=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
HPORT=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
printf 'mqtt.listen = 127.0.0.1:%s\nhttps.listen = 127.0.0.1:%s\npolicy.open = 1\nstore.segment_bytes = 262144\n' "$PORT" "$HPORT" > "$D/k.conf"
"$KZ" serve --config "$D/k.conf" --data "$D/var" > "$D/serve.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; umount "$D/var"; umount "$D/aud"; rm -rf "$D"' EXIT
health() { curl -s -o "$D/health.json" -w '%{http_code}' --cacert "$D/var/pki/ca.pem" "https://localhost:$HPORT/healthz"; }
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
pass=0; fail=0
P=$D/var/pki
M="-h localhost -p $PORT --cafile $P/ca.pem --cert $P/admin.pem --key $P/admin.key -V mqttv5"
mosquitto_pub $M -t full/before -m stored-before -q 1 && ok "publish with space" || ko "publish with space"
sleep 0.3
# fill the file system
dd if=/dev/zero of="$D/var/ballast" bs=64k 2>/dev/null
df -k "$D/var" | tail -1 | awk '{ exit !($4 == 0) }' && ok "disk is full" || ko "disk not full: $(df -k "$D/var" | tail -1)"
head -c 20000 /dev/zero | tr '\0' x > "$D/big"   # more than a page: cannot fit in slack
for i in 1 2 3 4 5; do
	mosquitto_pub $M -t full/during -f "$D/big" -q 1 > "$D/pub$i.out" 2>&1
done
grep -h -i "quota exceeded\|0x97\|151" "$D"/pub*.out | head -1 | grep -q . && ok "publish refused with 0x97 Quota exceeded" \
	|| ko "refusal: $(cat "$D"/pub*.out | head -5)"
"$KZ" pub --data "$D/var" -p "$PORT" -t full/during -f "$D/big" -q 1 > "$D/kzpub.out" 2>&1
expect_eq "kizuna pub exits 1 when refused" "$?" "1"
grep -q "not stored: no space left" "$D/kzpub.out" && ok "the reason string says why (no space left)" || ko "kizuna pub said: $(cat "$D/kzpub.out")"
expect_eq "fail state logged once" "$(grep -c 'store: writes fail' "$D/serve.log")" "1"
expect_eq "/healthz answers 503 while the store cannot be written" "$(health)" "503"
grep -q '"status":"failing"' "$D/health.json" && grep -q '"store":{"status":"failing"' "$D/health.json" \
	&& ok "/healthz names the store" || ko "/healthz said: $(cat "$D/health.json")"
"$KZ" query --data "$D/var" -t full/before --format ndjson | grep -q stored-before && ok "queries work while full" || ko "query while full"
"$KZ" store dump --data "$D/var" | grep -c '"topic":"full/during"' > "$D/n"
expect_eq "nothing refused was stored" "$(cat "$D/n")" "0"
rm -f "$D/var/ballast"
sleep 0.2
mosquitto_pub $M -t full/after -m stored-after -q 1 > "$D/after.out" 2>&1 && ! grep -qi "fail\|quota" "$D/after.out" \
	&& ok "writing resumes when space returns" || ko "after: $(cat "$D/after.out")"
sleep 0.3
expect_eq "recovery logged once" "$(grep -c 'store: writes succeed again' "$D/serve.log")" "1"
"$KZ" store verify --data "$D/var" > "$D/verify.out" 2>&1; expect_eq "log intact" "$?" "0"
"$KZ" store dump --data "$D/var" | grep -q stored-after && ok "the new record is in the log" || ko "new record missing"
expect_eq "/healthz answers 200 again" "$(health)" "200"
grep -q "kizuna_store_write_errors_total [1-9]" <(curl -s --cacert "$P/ca.pem" --cert "$P/admin.pem" --key "$P/admin.key" \
	"https://localhost:$HPORT/metrics") && ok "/metrics counts the store's write errors" || ko "/metrics store errors"
# the audit's disk: the node fails closed while it cannot record its decisions
dd if=/dev/zero of="$D/aud/ballast" bs=4k 2>/dev/null
for i in $(seq 30); do
	grep -q "audit: cannot write" "$D/serve.log" && break
	mosquitto_pub $M -t full/audit -m x -q 1 > /dev/null 2>&1
done
grep -q "audit: cannot write" "$D/serve.log" && ok "the audit write failure is logged" || ko "audit never failed"
mosquitto_pub $M -t full/audit -m x -q 1 > "$D/aud.out" 2>&1
grep -qi "0x88\|unavailable\|audit log cannot be written" "$D/aud.out" && ok "CONNECT refused while the audit cannot be written" \
	|| ko "audit refusal: $(cat "$D/aud.out")"
expect_eq "/healthz answers 503 while the audit cannot be written" "$(health)" "503"
grep -q '"audit":{"status":"failing"' "$D/health.json" && ok "/healthz names the audit" || ko "/healthz: $(cat "$D/health.json")"
rm -f "$D/aud/ballast"
sleep 0.2
mosquitto_pub $M -t full/audit2 -m back -q 1 > "$D/aud2.out" 2>&1 && ok "connections accepted once the audit can be written" \
	|| ko "after audit: $(cat "$D/aud2.out")"
expect_eq "/healthz answers 200 after the audit recovered" "$(health)" "200"
kill -TERM $PID; wait $PID; expect_eq "node stops cleanly" "$?" "0"
"$KZ" audit verify --data "$D/var" > "$D/averify.out" 2>&1; rc=$?
expect_eq "audit verify exits 3: intact but incomplete" "$rc" "3"
grep -q "INCOMPLETE: the chain verifies, but [0-9]* recorded gaps say" "$D/averify.out" && ok "verify reports the gap" \
	|| ko "verify said: $(cat "$D/averify.out")"
kz_finish
