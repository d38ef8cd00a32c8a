#!/bin/bash
# The README's five-minute tour, command by command as written there (default ports 8883 and
# 8443, ./var under a scratch directory), so that the tour cannot drift from the code:
# mosquitto clients and kizuna pub/sub as the development admin, store and query, an
# enrolled sensor that needs a registry line, revocation, TAXII and stix import, the entity
# picture (by alias, box, history, stream, MQTT snapshot), /healthz,
# TLS 1.2 refused by openssl s_client, then the policy section with its kizuna.conf.
set -u
. "$(dirname "$0")/lib.sh"
KZ=$(readlink -f "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${KZ_SHARED_DIR:-$ROOT/../shared}
for p in 8883 8443; do
	if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "SKIP: port $p is in use"; exit 77; fi
done
D=$(mktemp -d /tmp/kz-tour-XXXXXX)
mkdir -p "$D/build/src/cli" && ln -s "$KZ" "$D/build/src/cli/kizuna"
ln -s "$ROOT/tests" "$D/tests"
cd "$D"
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; cd /; rm -rf "$D"' EXIT
pass=0; fail=0
K=build/src/cli/kizuna
$K serve --data ./var > serve.log 2>&1 & PID=$!   # what `make run` starts
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8883) 2>/dev/null && break; sleep 0.1; done
P=./var/pki
M="-h localhost -p 8883 --cafile $P/ca.pem --cert $P/admin.pem --key $P/admin.key"
timeout 10 mosquitto_sub $M -V mqttv5 -t 'demo/#' -v -C 2 > sub.out & S=$!
sleep 0.5
mosquitto_pub $M -V mqttv5 -t demo/hello -m 'hello, kizuna' -q 1 && ok "mosquitto_pub as the admin" || ko "mosquitto_pub"
mosquitto_pub $M -V mqttv311 -t demo/old -m 'from 3.1.1' -q 2 && ok "mosquitto_pub 3.1.1" || ko "mosquitto_pub 3.1.1"
wait $S
expect_eq "mosquitto_sub got both" "$(tr '\n' '|' < sub.out)" "demo/hello hello, kizuna|demo/old from 3.1.1|"
$K pub --data ./var -t demo/hello -m hi -q 1 2>/dev/null && ok "kizuna pub" || ko "kizuna pub"
$K store verify --data ./var > /dev/null && ok "store verify" || ko "store verify"
sleep 1
$K query --data ./var -t 'demo/#' --since 2026-01-01T00:00:00Z --format ndjson | grep -q '"topic":"demo/old"' \
	&& ok "query" || ko "query"
# enrolment: the sensor needs a registry line before it may subscribe
T=$($K ca token --data ./var --id spiffe://kizuna.local/dev/sensor/radar7 --ttl 1h)
$K enroll --cafile var/pki/ca.pem --token $T --out "$D/radar7" > /dev/null && ok "enroll" || ko "enroll"
R="--cafile $D/radar7/ca.pem --cert $D/radar7/cert.pem --key $D/radar7/key.pem"
$K sub $R -t 'demo/#' -C 1 2> deny.err; expect_eq "the enrolled sensor is refused before the registry lists it" "$?" "1"
echo 'spiffe://kizuna.local/dev/sensor/radar7 org=dev clearance=restricted' >> var/pki/dev.identities
$K policy reload --data ./var > /dev/null && ok "policy reload" || ko "policy reload"
timeout 10 $K sub $R -t 'demo/#' -C 1 > radar.out 2>/dev/null & S=$!
sleep 0.5
$K pub --data ./var -t demo/radar -m ping -q 1 2>/dev/null
wait $S; expect_eq "the listed sensor receives" "$(cat radar.out)" "ping"
$K ca revoke --data ./var --cert $D/radar7/cert.pem --reason keyCompromise > /dev/null && ok "ca revoke" || ko "ca revoke"
sleep 1
$K sub $R -t 'demo/#' -C 1 2>/dev/null; expect_eq "the revoked sensor is refused" "$?" "1"
# post-quantum and /healthz
curl -s --cacert var/pki/ca.pem https://localhost:8443/healthz | grep -q '"status":"ok"' && ok "healthz ok" || ko "healthz"
(sleep 1) | openssl s_client -tls1_2 -connect localhost:8883 -CAfile var/pki/ca.pem 2>&1 | grep -q "alert number 70" \
	&& ok "TLS 1.2 refused with protocol_version" || ko "TLS 1.2"
# threat sharing
C="curl -s --cacert var/pki/ca.pem --cert var/pki/admin.pem --key var/pki/admin.key -H Accept:application/taxii+json;version=2.1"
$C https://localhost:8443/taxii2/api/collections/ | grep -q '"collections"' && ok "TAXII collections as the admin" || ko "TAXII"
$C https://localhost:8443/metrics | grep -q kizuna_mqtt_connections && ok "metrics as the admin (monitor)" || ko "metrics"
if [ -f "$SHARED/data/stix/ics-attack.json" ]; then
	$K stix import "$SHARED/data/stix/ics-attack.json" 2> imp.err; expect_eq "stix import" "$?" "0"
	grep -q "1826 objects: 1826 accepted" imp.err && ok "stix import counts" || ko "stix import: $(tail -1 imp.err)"
fi
# the entity picture
T="--cafile var/pki/ca.pem --cert var/pki/admin.pem --key var/pki/admin.key"
E="curl -s --cacert var/pki/ca.pem --cert var/pki/admin.pem --key var/pki/admin.key"
mosquitto_pub -h localhost -p 8883 $T -V mqttv5 -q 1 -t kz/entity/trk-1 \
  -m '{"id":"trk-1","aliases":["mmsi:431000000"],"type":"a-f-S-X","position":{"lat":35.6,"lon":139.7}}' \
	&& ok "entity update published" || ko "entity update"
for _ in $(seq 50); do $E https://localhost:8443/api/v1/entities/mmsi:431000000 | grep -q '"id":"trk-1"' && break; sleep 0.1; done
$E https://localhost:8443/api/v1/entities/mmsi:431000000 | grep -q '"id":"trk-1"' && ok "entity by alias" || ko "entity by alias"
$E "https://localhost:8443/api/v1/entities?bbox=139,35,140,36" | grep -q '"trk-1"' && ok "entities in a box" || ko "entities bbox"
$E https://localhost:8443/api/v1/entities/trk-1/history | grep -q '"history":\[{' && ok "entity history" || ko "entity history"
timeout 2 $E -N https://localhost:8443/api/v1/stream/entities > sse.out; grep -q "event: synced" sse.out && ok "entity stream" || ko "entity stream"
timeout 3 mosquitto_sub -h localhost -p 8883 $T -V mqttv5 -t 'kz/entity/#' -D subscribe user-property kz-snapshot 1 -v -C 1 | grep -q '"type":"a-f-S-X"' \
	&& ok "entity snapshot over MQTT" || ko "entity snapshot over MQTT"
# tasks
$K agent --data var --step-ms 200 > agent.out 2>&1 & AG=$!
for _ in $(seq 50); do $E https://localhost:8443/api/v1/agents | grep -q '"goto"' && break; sleep 0.1; done
$K task create --data var --id demo-1 --kind goto \
  --assignee spiffe://kizuna.local/dev/user/admin --params '{"lat":35.70,"lon":139.80}' > /dev/null 2>&1 \
	&& ok "task create" || ko "task create"
timeout 30 $K task watch --data var demo-1 2>/dev/null | grep -q DONE_OK && ok "task watched to DONE_OK" || ko "task watch"
$E https://localhost:8443/api/v1/entities/admin | grep -q '"lat":35.7,' && ok "the agent at the goal" || ko "agent entity"
$K task list --data var 2>/dev/null | grep -q "demo-1 .*DONE_OK" && ok "task list" || ko "task list"
kill $AG; wait $AG
# sensor adapters
if [ -f "$SHARED/data/tracks/gpsd/sample.aivdm" ]; then
	$K adapter decode ais "$SHARED/data/tracks/gpsd/sample.aivdm" 2>/dev/null | head -3 | grep -q '"mmsi":371798000' \
		&& ok "adapter decode" || ko "adapter decode"
	$K adapter replay ais "$SHARED/data/tracks/pyais/nmea_data_sample.txt" --data var 2> replay.err \
		&& ok "adapter replay" || ko "adapter replay: $(tail -1 replay.err)"
	for _ in $(seq 50); do $E "https://localhost:8443/api/v1/entities?type=a-u-S&limit=3" | grep -q '"mmsi:' && break; sleep 0.1; done
	$E "https://localhost:8443/api/v1/entities?type=a-u-S&limit=3" | grep -q '"id":"mmsi:' && ok "ships in the picture" || ko "ships"
fi
# detection, offline
if [ -f "$SHARED/data/zeek/zed-sample-data/zeek-default/dns.log.gz" ]; then
	printf '#fields\tindicator\tindicator_type\tmeta.source\n134.71.3.0/24\tIntel::SUBNET\ttour\n' > tour.intel
	$K detect scan "$SHARED/data/zeek/zed-sample-data/zeek-default/dns.log.gz" --indicators tour.intel 2> detect.err \
		| head -c 400 | grep -q '"type":"sighting"' && ok "detect scan" || ko "detect scan: $(tail -1 detect.err)"
fi
# the policy section: a config file with a copy of the fixture that lists the admin
kill -INT $PID; wait $PID
F=tests/data/policy
cp $F/kizuna.policy $F/identities var/
echo 'spiffe://kizuna.local/dev/user/admin org=dev nation=jpn clearance=secret caveats=cyber roles=auditor' >> var/identities
printf 'policy.file = %s/var/kizuna.policy\npolicy.registry = %s/var/identities\n' "$PWD" "$PWD" > kizuna.conf
$K serve --config kizuna.conf --data ./var > serve2.log 2>&1 & PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8883) 2>/dev/null && break; sleep 0.1; done
timeout 2 $K sub --data ./var -t '#' -C 1 2> sub2.err; expect_eq "the admin, an auditor there, may subscribe to #" "$?" "124"
$K policy reload --config kizuna.conf --data ./var > /dev/null && ok "policy reload with kizuna.conf" || ko "reload"
$K query --data ./var --as spiffe://kizuna.local/meti/user/bob --config kizuna.conf > /dev/null 2>&1 \
	&& ok "query --as bob" || ko "query --as"
kill -INT $PID; wait $PID
kz_finish
