#!/bin/bash
# The CLI: serve --check, kizuna pub/sub, help, exit codes, SIGINT.
set -u
. "$(dirname "$0")/lib.sh"
KZ=$1
HP=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
kz_start "$KZ" "https.listen = 127.0.0.1:$HP"
printf 'threads = x\nbogus = 1\nlimits.max_inflight = 70000\n' > "$D/bad.conf"
out=$("$KZ" serve --check --config "$D/bad.conf" 2>&1); rc=$?
expect_eq "--check exit code on errors" "$rc" "1"
expect_eq "--check reports file:line" "$(echo "$out" | cut -d: -f2 | tr '\n' ' ')" "1 2 3 "
"$KZ" serve --check --config "$D/k.conf" > /dev/null; expect_eq "--check valid config" "$?" "0"
timeout 10 "$KZ" sub --data "$D/var" -p "$PORT" -t 'cli/#' -v -C 2 -q 1 > "$D/sub.out" &
S=$!; sleep 0.3
"$KZ" pub --data "$D/var" -p "$PORT" -t cli/a -m one -q 1; expect_eq "kizuna pub QoS 1 exit" "$?" "0"
echo two | "$KZ" pub --data "$D/var" -p "$PORT" -t cli/b -f - -q 2; expect_eq "kizuna pub QoS 2 from stdin" "$?" "0"
wait $S
expect_eq "kizuna sub output" "$(cat "$D/sub.out" | tr '\n' '|')" "cli/a one|cli/b two||"
"$KZ" pub --data "$D/var" -p "$PORT" -t 'bad/#' -m x -q 1 2> "$D/err"; rc=$?
expect_eq "publish to a wildcard topic fails" "$rc" "1"
grep -q "0x90" "$D/err" && ok "reason code shown" || ko "reason code shown: $(cat "$D/err")"
"$KZ" nosuch > /dev/null 2>&1; expect_eq "unknown command exit 2" "$?" "2"
# honest exit codes and answers (issue 16)
"$KZ" pub --data "$D/var" -p "$PORT" -t '$SYS/x' -m x 2> "$D/err"; expect_eq "refused QoS 0 publish exits 1" "$?" "1"
grep -q "0x87" "$D/err" && ok "the node's DISCONNECT reason is shown" || ko "QoS 0 refusal: $(cat "$D/err")"
grep -q "as the node's admin identity" "$D/err" && ok "the identity used is said" || ko "identity: $(cat "$D/err")"
"$KZ" sub --data "$D/var" -p "$PORT" -t 'a/#/b' -t '+/#/c' 2> "$D/err"; expect_eq "sub with every subscription refused exits 1" "$?" "1"
grep -q "every subscription was refused" "$D/err" && ok "sub says so" || ko "sub: $(cat "$D/err")"
"$KZ" pub --data "$D/var" -p "$PORT" --cert "$P/admin.pem" -t cli/x -m x 2> "$D/err"; expect_eq "--cert without --key is a usage error" "$?" "2"
FREE=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$KZ" pub --data "$D/var" -p "$FREE" -t cli/x -m x 2> "$D/err"; expect_eq "closed port exits 1" "$?" "1"
grep -q "connection refused" "$D/err" && ok "a closed port is named as such" || ko "closed port: $(cat "$D/err")"
"$KZ" pub --data "$D/var" -p "$HP" -t cli/x -m x -q 1 2> "$D/err"; expect_eq "an HTTPS port is not MQTT: exit 1" "$?" "1"
"$KZ" store verify --data "$D/nodir" 2> "$D/err"; expect_eq "store verify on a missing directory exits 1" "$?" "1"
mkdir "$D/notdata"
"$KZ" store reindex --data "$D/notdata" 2> "$D/err"; expect_eq "store reindex on a directory that is not a node's exits 1" "$?" "1"
expect_eq "nothing was created there" "$(ls -A "$D/notdata" | wc -l)" "0"
[ ! -e "$D/nodir" ] && ok "no directory created" || ko "store verify created $D/nodir"
"$KZ" query --data "$D/var" -t 'demo/#/x' 2> "$D/err"; expect_eq "query refuses an invalid filter" "$?" "2"
echo 'root:x:0:0' > "$D/passwd"
"$KZ" stix import --data "$D/var" --url "https://localhost:$HP" "$D/passwd" 2> "$D/err"; expect_eq "stix import of a non-STIX file exits 1" "$?" "1"
grep -q "not STIX" "$D/err" && ok "stix import says: not STIX" || ko "stix import: $(cat "$D/err")"
"$KZ" stix sight --data "$D/var" --url "https://localhost:$HP" indicator--6d9b1f7e-4b0a-4f7e-8f66-1f0b0a0d1122 2> "$D/err"
expect_eq "stix sight of an unknown indicator exits 1" "$?" "1"
grep -q "holds no such object" "$D/err" && ok "stix sight says why" || ko "sight: $(cat "$D/err")"
"$KZ" help serve | grep -q "usage: kizuna serve" && ok "help serve" || ko "help serve"
"$KZ" help config | grep -q "limits.max_packet_size" && ok "help config" || ko "help config"
# one node per port: a second node on another data directory may not share the listener
timeout 20 "$KZ" serve --config "$D/k.conf" --data "$D/var2" > "$D/serve2.log" 2>&1; rc=$?
expect_eq "second node on the same port exits 1" "$rc" "1"
grep -q "address in use" "$D/serve2.log" && ok "second node says address in use" || ko "second node: $(tail -3 "$D/serve2.log")"
"$KZ" pub --data "$D/var" -p "$PORT" -t cli/c -m still -q 1; expect_eq "first node still serves" "$?" "0"
kill -INT $PID; wait $PID; expect_eq "SIGINT exits 0" "$?" "0"
# an emptied audit log is not re-signed at the next start (issue 16)
"$KZ" audit verify --data "$D/var" > /dev/null; expect_eq "audit intact after a clean stop" "$?" "0"
: > "$D/var/audit/audit.log"
timeout 20 "$KZ" serve --config "$D/k.conf" --data "$D/var" > "$D/serve3.log" 2>&1; rc=$?
expect_eq "start on an emptied audit log exits 1" "$rc" "1"
grep -q "but its last signed head" "$D/serve3.log" && ok "the refusal says the log is shorter than its head" \
	|| ko "start said: $(tail -2 "$D/serve3.log")"
"$KZ" audit reset --data "$D/var" > "$D/reset.out" 2>&1; expect_eq "audit reset without --reason is a usage error" "$?" "2"
"$KZ" audit reset --data "$D/var" --reason "test: emptied log" > "$D/reset.out" 2>&1; expect_eq "audit reset" "$?" "0"
"$KZ" serve --config "$D/k.conf" --data "$D/var" > "$D/serve4.log" 2>&1 &
PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
kill -INT $PID; wait $PID; expect_eq "starts after the reset" "$?" "0"
"$KZ" audit verify --data "$D/var" > "$D/verify.out"; expect_eq "verify after a reset exits 3" "$?" "3"
grep -q "starts a new chain after a log that was moved aside" "$D/verify.out" && ok "verify names the quarantined log" \
	|| ko "verify said: $(cat "$D/verify.out")"
kz_finish
