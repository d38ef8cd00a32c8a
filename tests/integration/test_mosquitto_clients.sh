#!/bin/bash
# mosquitto_pub/mosquitto_sub (Debian's Mosquitto 2.0 clients) against a real node.
set -u
. "$(dirname "$0")/lib.sh"
kz_start "$1"
T=(--cafile "$P/ca.pem" --cert "$P/admin.pem" --key "$P/admin.key" -h localhost -p "$PORT")
for v in mqttv311 mqttv5; do
	for q in 0 1 2; do
		timeout 10 mosquitto_sub "${T[@]}" -V $v -q $q -t "m/$v/$q" -C 100 > "$D/sub.out" &
		S=$!
		sleep 0.3
		for i in $(seq 100); do echo "msg $i"; done | mosquitto_pub "${T[@]}" -V $v -q $q -t "m/$v/$q" -l
		wait $S
		expect_eq "$v QoS $q: 100 messages in order" "$(cat "$D/sub.out" | md5sum)" "$(for i in $(seq 100); do echo "msg $i"; done | md5sum)"
	done
done
mosquitto_pub "${T[@]}" -V mqttv5 -t m/ret -m retained -r -q 1
expect_eq "retained via mosquitto" "$(timeout 5 mosquitto_sub "${T[@]}" -V mqttv5 -t m/ret -C 1)" "retained"
expect_eq "retained carries the retain flag" "$(timeout 5 mosquitto_sub "${T[@]}" -V mqttv5 -t m/ret -C 1 -F '%r')" "1"
mosquitto_pub "${T[@]}" -V mqttv5 -t m/ret -n -r -q 1
timeout 2 mosquitto_sub "${T[@]}" -V mqttv5 -t m/ret -C 1 -W 1 > "$D/none" 2>&1
expect_eq "empty retained payload deletes" "$(cat "$D/none")" "Timed out"
# user properties travel end to end
timeout 5 mosquitto_sub "${T[@]}" -V mqttv5 -t m/up -C 1 -F '%P' > "$D/up" &
S=$!; sleep 0.3
mosquitto_pub "${T[@]}" -V mqttv5 -t m/up -m x -D publish user-property site tokyo
wait $S
expect_eq "user property forwarded" "$(cat "$D/up")" "site:tokyo"
kz_finish
