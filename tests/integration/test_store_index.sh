#!/bin/bash
# The index, queries and retention from the outside: `kizuna query` against a running node,
# retention rules dropping and keeping what they should, QoS 0 kept out of the log by rule,
# retained messages surviving a restart, reindex giving identical results, and the data
# directory lock refusing a second node and offline writers.
set -u
. "$(dirname "$0")/lib.sh"
KZ=$1
kz_start "$KZ" "store.segment_bytes = 4096
store.retention = tmp/# max_age=1s
store.retention = noq0/# qos0=skip
store.retention = last/+ keep_last=2
store.retention_interval_ms = 200"
M="-h localhost -p $PORT --cafile $P/ca.pem --cert $P/admin.pem --key $P/admin.key"
mosquitto_pub $M -t ret/a -m alpha -r -q 1 || ko "retained pub"
mosquitto_pub $M -t ret/b -m beta -r -q 1
mosquitto_pub $M -t ret/gone -m x -r -q 1
mosquitto_pub $M -t ret/gone -m '' -r -q 1           # deletes ret/gone's retained message
seq 1 50 | sed 's/^/tmp /' | mosquitto_pub $M -t tmp/t -l -q 1
seq 1 30 | sed 's/^/last /' | mosquitto_pub $M -t last/x -l -q 1
seq 1 20 | sed 's/^/q0 /' | mosquitto_pub $M -t noq0/z -l -q 0
mosquitto_pub $M -t noq0/z -m kept-q1 -q 1
mosquitto_pub $M -V mqttv5 -t sensors/a -m '{"v":1}' -q 1 -D publish content-type application/json
# filler that pushes everything above into closed segments
seq 1 100 | sed 's/^/filler padding padding padding padding padding padding /' | mosquitto_pub $M -t fill/f -l -q 1
sleep 1.5   # past max_age, and several retention passes

q() { "$KZ" query --data "$D/var" "$@"; }
expect_eq "query while running: exact topic" "$(q -t ret/a --format ndjson | grep -c '"payload":"alpha"')" "1"
expect_eq "wildcard covers the topic's level and below" "$(q -t 'ret/#' --format ndjson | wc -l)" "4"
expect_eq "json format is one array" "$(q -t ret/b | head -1)" "["
q -t ret/b | /usr/bin/python3 -c 'import json,sys; a=json.load(sys.stdin); assert a[0]["payload"]=="beta" and a[0]["retain"] is True and a[0]["origin_id"].startswith("spiffe://")' \
	&& ok "json parses, fields present" || ko "json output"
expect_eq "content type recorded and selectable" "$(q --content-type application/json --format ndjson | grep -c '"topic":"sensors/a"')" "1"
expect_eq "origin selects" "$(q --origin spiffe://kizuna.local/dev/user/admin --limit 0 --format ndjson | grep -c '"topic":"ret/a"')" "1"
expect_eq "limit" "$(q -t 'fill/f' --limit 7 --format ndjson | wc -l)" "7"
expect_eq "since in the future: nothing" "$(q --since 2099-01-01T00:00:00Z)" "[]"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ -d '-1 hour')
expect_eq "since an hour ago: everything of fill/f" "$(q -t fill/f --since "$now" --limit 0 --format ndjson | wc -l)" "100"
expect_eq "qos0=skip: QoS 0 not stored" "$(q -t 'noq0/#' --format ndjson | grep -c '"payload":"q0 ')" "0"
expect_eq "qos0=skip: QoS 1 still stored" "$(q -t 'noq0/#' --format ndjson | grep -c kept-q1)" "1"
ntmp=$(q -t 'tmp/#' --limit 0 --format ndjson | wc -l)
[ "$ntmp" -lt 50 ] && ok "max_age dropped expired records ($ntmp of 50 left)" || ko "max_age: $ntmp of 50 left"
nlast=$(q -t 'last/x' --limit 0 --format ndjson | wc -l)
[ "$nlast" -lt 30 ] && ok "keep_last compacted ($nlast of 30 left)" || ko "keep_last: $nlast left"
q -t last/x --limit 0 --format ndjson | grep -q '"payload":"last 30"' && ok "keep_last keeps the newest" || ko "newest lost"
grep -q "retention: dropped" "$D/serve.log" && ok "retention logged" || ko "no retention log line"
# bad arguments
q --since yesterday 2> "$D/err"; expect_eq "bad time exit 2" "$?" "2"
grep -q "not an RFC 3339 time" "$D/err" && ok "bad time explained" || ko "$(cat "$D/err")"
q --format xml 2>/dev/null; expect_eq "bad format exit 2" "$?" "2"
q --limit -3 2>/dev/null; expect_eq "bad limit exit 2" "$?" "2"
"$KZ" query --data "$D/nowhere" 2> "$D/err"; expect_eq "no data directory exit 1" "$?" "1"
grep -q "no such directory" "$D/err" && ok "missing data directory explained" || ko "$(cat "$D/err")"
mkdir -p "$D/noindex/pki"
"$KZ" query --data "$D/noindex" 2> "$D/err"; expect_eq "no index exit 1" "$?" "1"
grep -q "no index at" "$D/err" && ok "missing index explained" || ko "$(cat "$D/err")"
# the lock
"$KZ" store reindex --data "$D/var" 2> "$D/err"; expect_eq "reindex refused while running" "$?" "1"
grep -q "in use by another kizuna process.*stop the node first" "$D/err" && ok "reindex refusal explained" || ko "$(cat "$D/err")"
"$KZ" serve --data "$D/var" --config "$D/k.conf" > "$D/second.log" 2>&1; expect_eq "second node refused" "$?" "1"
grep -q "in use by another kizuna process" "$D/second.log" && ok "second node told why" || ko "$(cat "$D/second.log")"

kill -TERM $PID; wait $PID; expect_eq "node stops" "$?" "0"
q --limit 0 --format ndjson > "$D/before.json"
"$KZ" store reindex --data "$D/var" > "$D/reindex.out"; expect_eq "reindex exit 0" "$?" "0"
grep -q "records indexed from" "$D/reindex.out" && ok "reindex reports" || ko "$(cat "$D/reindex.out")"
q --limit 0 --format ndjson > "$D/after.json"
cmp -s "$D/before.json" "$D/after.json" && ok "reindex gives identical results ($(wc -l < "$D/after.json") records)" \
	|| ko "reindex differs: $(diff "$D/before.json" "$D/after.json" | head -5)"
rm -f "$D/var/index.db"*
"$KZ" serve --config "$D/k.conf" --data "$D/var" > "$D/serve2.log" 2>&1 &
PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
grep -q "index: [0-9]* records indexed" "$D/serve2.log" && ok "a deleted index is rebuilt at start" || ko "$(cat "$D/serve2.log")"
out=$(timeout 5 mosquitto_sub $M -t 'ret/#' -v -W 2 2>/dev/null | sort | tr '\n' ' ')
expect_eq "retained messages survive the restart" "$out" "ret/a alpha ret/b beta "
q --limit 0 --format ndjson > "$D/again.json"
# the rebuilt index has everything the old one had (the retention pass may since drop more)
[ "$(wc -l < "$D/again.json")" -le "$(wc -l < "$D/after.json")" ] && [ "$(grep -c ret/ "$D/again.json")" = 4 ] \
	&& ok "rebuilt index answers queries" || ko "rebuilt index: $(wc -l < "$D/again.json") lines"
kill -TERM $PID; wait $PID
kz_finish
