#!/bin/bash
# The record log from the outside: what a publish leaves in DIR/log (kizuna store dump),
# a damaged log stopping the start with file and offset, verify, repair, bad arguments.
set -u
. "$(dirname "$0")/lib.sh"
KZ=$1
kz_start "$KZ" "store.segment_bytes = 4096"
for i in $(seq 1 40); do
	"$KZ" pub --data "$D/var" -p "$PORT" -t "st/$i" -m "message-$i" -q 1 || ko "pub $i"
done
printf '\x00\xff\x01' | "$KZ" pub --data "$D/var" -p "$PORT" -t st/bin -f - -q 1
kill -TERM $PID; wait $PID; expect_eq "node stops with exit 0" "$?" "0"
"$KZ" store dump --data "$D/var" > "$D/dump.json"; expect_eq "dump exit 0" "$?" "0"
expect_eq "every published record is in the log" "$(grep -c '"topic":"st/' "$D/dump.json")" "41"
grep -q '"topic":"st/7","qos":1,"retain":false,"precedence":"routine","origin_node":"[^"]*","origin_id":"spiffe://kizuna.local/dev/user/admin","payload":"message-7"' "$D/dump.json" \
	&& ok "record fields" || ko "record fields: $(grep 'st/7"' "$D/dump.json")"
grep -q '"topic":"st/bin".*"payload_base64":"AP8B"' "$D/dump.json" && ok "binary payload as base64" || ko "binary payload: $(grep st/bin "$D/dump.json")"
nseg=$(ls "$D/var/log"/*.seg | wc -l)
[ "$nseg" -gt 1 ] && ok "segments roll at store.segment_bytes ($nseg)" || ko "one segment only"
out=$("$KZ" store verify --data "$D/var"); expect_eq "verify exit 0" "$?" "0"
echo "$out" | grep -q ": 41 records, 0 undecodable" && ok "verify counts" || ko "verify: $out"
# Damage the first segment's third frame body (header 32 bytes, frames of 16 + body).
seg=$(ls "$D/var/log"/*.seg | head -1)
/usr/bin/python3 - "$seg" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
off = 32
for _ in range(2):
    off += 16 + struct.unpack("<I", b[off:off + 4])[0]
b[off + 20] ^= 0xFF
open(sys.argv[1], "wb").write(b)

PY
"$KZ" serve --config "$D/k.conf" --data "$D/var" > "$D/bad.log" 2>&1; rc=$?
expect_eq "a damaged log stops the start" "$rc" "1"
grep -q "record log: $seg: offset [0-9]*: CRC32C mismatch; the log is damaged before its end (run \`kizuna store repair\`)" "$D/bad.log" \
	&& ok "start error names file and offset" || ko "start error: $(cat "$D/bad.log")"
"$KZ" store verify --data "$D/var" 2> "$D/verify.err"; expect_eq "verify exit 1 on damage" "$?" "1"
grep -q "$seg: offset [0-9]*: CRC32C mismatch" "$D/verify.err" && ok "verify names the offset" || ko "verify: $(cat "$D/verify.err")"
out=$("$KZ" store repair --data "$D/var"); expect_eq "repair exit 0" "$?" "0"
echo "$out" | grep -q "CRC32C mismatch; 1 records lost (seq 3-3)" && ok "repair reports the record lost" || ko "repair: $out"
out=$("$KZ" store verify --data "$D/var"); expect_eq "verify after repair" "$?" "0"
echo "$out" | grep -q ": 40 records" && ok "40 records left" || ko "after repair: $out"
"$KZ" store frobnicate --data "$D/var" 2> "$D/err"; expect_eq "unknown store action exit 2" "$?" "2"
grep -q "unknown action 'frobnicate'" "$D/err" && ok "unknown action named" || ko "$(cat "$D/err")"
"$KZ" store > /dev/null 2>&1; expect_eq "store without action exit 2" "$?" "2"
kz_finish
