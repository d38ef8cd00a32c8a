#!/bin/bash
# The CLI: serve --check, kizuna pub/sub, help, exit codes, SIGINT.
set -u
. "$(dirname "$0")/lib.sh"
KZ=$1
kz_start "$KZ"
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
