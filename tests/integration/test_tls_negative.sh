#!/bin/bash
# Negative TLS: no client certificate, another CA, TLS 1.2, expired certificate, no SPIFFE
# URI SAN — each refused; the admin certificate is accepted. Uses openssl s_client and
# mosquitto_pub as the outside clients.
set -u
KZ=$1
D=$(mktemp -d /tmp/kz-tls-XXXXXX)
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$D"' EXIT
PORT=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
printf 'mqtt.listen = 127.0.0.1:%s\nhttps.listen = 127.0.0.1:0\npolicy.open = 1\n' "$PORT" > "$D/k.conf"
"$KZ" serve --config "$D/k.conf" --data "$D/var" > "$D/serve.log" 2>&1 &
PID=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
P=$D/var/pki
fail=0; pass=0
check() { # name expected(0=accept,1=refuse) command...
	local name=$1 want=$2; shift 2
	if timeout 10 "$@" > "$D/out" 2>&1; then got=0; else got=1; fi
	if [ "$got" = "$want" ]; then echo "PASS $name"; pass=$((pass+1)); else echo "FAIL $name"; cat "$D/out"; fail=$((fail+1)); fi
}
PUB=(mosquitto_pub -h localhost -p "$PORT" --cafile "$P/ca.pem" -t tls/x -m hi -q 1 -V mqttv5)
# another CA with its own client certificate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$D/oca.key" -out "$D/oca.pem" -subj /CN=other -days 2 2>/dev/null
mkcert() { # name ca-prefix extfile-lines validity-args
	local n=$1 ca=$2 ext=$3; shift 3
	openssl ecparam -name prime256v1 -genkey -noout -out "$D/$n.key"
	openssl req -new -key "$D/$n.key" -subj "/CN=$n" -out "$D/$n.csr"
	printf "%b" "$ext" > "$D/$n.ext"
	openssl x509 -req -in "$D/$n.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial -out "$D/$n.pem" -extfile "$D/$n.ext" "$@" 2>/dev/null
}
EXT='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://kizuna.local/dev/user/x\n'
mkcert foreign "$D/oca" "$EXT" -days 1
# expired: `openssl ca` is the 3.0 tool that takes explicit validity dates
mkdir -p "$D/ca"; : > "$D/ca/index.txt"; echo 01 > "$D/ca/serial"
cat > "$D/ca.cnf" <<CNF
[ca]
default_ca = x
[x]
database = $D/ca/index.txt
serial = $D/ca/serial
new_certs_dir = $D/ca
default_md = sha256
policy = p
[p]
commonName = supplied
CNF
openssl ecparam -name prime256v1 -genkey -noout -out "$D/expired.key"
openssl req -new -key "$D/expired.key" -subj /CN=expired -out "$D/expired.csr"
printf "%b" "$EXT" > "$D/expired.ext"
openssl ca -batch -config "$D/ca.cnf" -cert "$P/ca.pem" -keyfile "$P/ca.key" -in "$D/expired.csr" \
	-out "$D/expired.pem" -startdate 20200101000000Z -enddate 20200102000000Z -extfile "$D/expired.ext" -notext 2>/dev/null
mkcert nouri "$P/ca" 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' -days 1
mkcert twouri "$P/ca" 'extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://kizuna.local/a/user/b,URI:spiffe://kizuna.local/a/user/c\n' -days 1
# identity checks (docs/SECURITY.md): trust domain, path shape, kind, CA flag, EKU
V='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n'
mkcert othertd "$P/ca" "${V}extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://evil.example/dev/user/x\n" -days 1
mkcert badkind "$P/ca" "${V}extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://kizuna.local/dev/robot/x\n" -days 1
mkcert shortpath "$P/ca" "${V}extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://kizuna.local/dev/user\n" -days 1
mkcert badchar "$P/ca" "${V}extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://kizuna.local/dev/user/a%20b\n" -days 1
mkcert isca "$P/ca" 'basicConstraints=critical,CA:TRUE\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://kizuna.local/dev/user/ca\n' -days 1
mkcert noeku "$P/ca" "${V}subjectAltName=URI:spiffe://kizuna.local/dev/user/noeku\n" -days 1
mkcert serveronly "$P/ca" "${V}extendedKeyUsage=serverAuth\nsubjectAltName=URI:spiffe://kizuna.local/dev/user/srv\n" -days 1
mkcert sensor "$P/ca" "${V}extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://kizuna.local/meti/sensor/radar-1\n" -days 1
# strict credentials (issue 25): key usage, lifetime, dot segments
mkcert noku "$P/ca" "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://kizuna.local/dev/user/noku\n" -days 1
mkcert kcs "$P/ca" "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyCertSign\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://kizuna.local/dev/user/kcs\n" -days 1
mkcert tenyears "$P/ca" "${V}extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://kizuna.local/dev/user/old\n" -days 3650
mkcert dotdot "$P/ca" "${V}extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://kizuna.local/dev/user/..\n" -days 1
mkcert dot "$P/ca" "${V}extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://kizuna.local/dev/./x\n" -days 1
for f in foreign expired nouri twouri othertd badkind shortpath badchar isca noeku serveronly sensor noku kcs tenyears dotdot dot; do
	[ -s "$D/$f.pem" ] || { echo "FAIL could not create the $f test certificate"; exit 1; }
done
check "admin certificate accepted" 0 "${PUB[@]}" --cert "$P/admin.pem" --key "$P/admin.key"
check "no client certificate refused" 1 "${PUB[@]}"
check "certificate from another CA refused" 1 "${PUB[@]}" --cert "$D/foreign.pem" --key "$D/foreign.key"
check "expired certificate refused" 1 "${PUB[@]}" --cert "$D/expired.pem" --key "$D/expired.key"
check "certificate without URI SAN refused" 1 "${PUB[@]}" --cert "$D/nouri.pem" --key "$D/nouri.key"
check "certificate with two URI SANs refused" 1 "${PUB[@]}" --cert "$D/twouri.pem" --key "$D/twouri.key"
check "foreign trust domain refused" 1 "${PUB[@]}" --cert "$D/othertd.pem" --key "$D/othertd.key"
check "unknown kind refused" 1 "${PUB[@]}" --cert "$D/badkind.pem" --key "$D/badkind.key"
check "path without a name refused" 1 "${PUB[@]}" --cert "$D/shortpath.pem" --key "$D/shortpath.key"
check "bad character in the path refused" 1 "${PUB[@]}" --cert "$D/badchar.pem" --key "$D/badchar.key"
check "CA certificate as client refused" 1 "${PUB[@]}" --cert "$D/isca.pem" --key "$D/isca.key"
check "no extended key usage refused" 1 "${PUB[@]}" --cert "$D/noeku.pem" --key "$D/noeku.key"
check "serverAuth-only certificate refused" 1 "${PUB[@]}" --cert "$D/serveronly.pem" --key "$D/serveronly.key"
check "a sensor of another organisation accepted" 0 "${PUB[@]}" --cert "$D/sensor.pem" --key "$D/sensor.key"
check "certificate without key usage refused" 1 "${PUB[@]}" --cert "$D/noku.pem" --key "$D/noku.key"
check "leaf with keyCertSign refused" 1 "${PUB[@]}" --cert "$D/kcs.pem" --key "$D/kcs.key"
check "ten-year certificate refused (ca.max_cert_lifetime)" 1 "${PUB[@]}" --cert "$D/tenyears.pem" --key "$D/tenyears.key"
check "'..' path segment refused" 1 "${PUB[@]}" --cert "$D/dotdot.pem" --key "$D/dotdot.key"
check "'.' path segment refused" 1 "${PUB[@]}" --cert "$D/dot.pem" --key "$D/dot.key"
# the exact TLS alert of each refusal (RFC 8446 6.2), as openssl s_client reports it
alert() { # name want s_client-args...
	local name=$1 want=$2; shift 2
	local got
	got=$( (sleep 1) | timeout 10 openssl s_client -connect 127.0.0.1:$PORT -CAfile $P/ca.pem "$@" 2>&1 | grep -o "alert number [0-9]*" | head -1 | awk '{print $3}')
	if [ "$got" = "$want" ]; then echo "PASS $name: alert $want"; pass=$((pass+1)); else echo "FAIL $name: alert '$got', want $want"; fail=$((fail+1)); fi
}
alert "no client certificate" 116
alert "another CA" 48 -cert "$D/foreign.pem" -key "$D/foreign.key"
alert "TLS 1.2" 70 -tls1_2 -cert "$P/admin.pem" -key "$P/admin.key"
alert "expired" 45 -cert "$D/expired.pem" -key "$D/expired.key"
for c in nouri othertd badkind isca noeku noku kcs tenyears dotdot; do
	alert "$c" 42 -cert "$D/$c.pem" -key "$D/$c.key"
done
check "TLS 1.2 client refused" 1 sh -c "openssl s_client -connect 127.0.0.1:$PORT -tls1_2 -CAfile $P/ca.pem -cert $P/admin.pem -key $P/admin.key </dev/null 2>&1 | grep -q 'New, TLSv1.2'"
check "a P-256-only client (no X25519: FIPS-mode and embedded stacks) handshakes" 0 sh -c "openssl s_client -connect 127.0.0.1:$PORT -tls1_3 -groups P-256 -CAfile $P/ca.pem -cert $P/admin.pem -key $P/admin.key </dev/null 2>&1 | grep -q 'Negotiated TLS1.3 group: prime256v1\\|Server Temp Key: ECDH, prime256v1'"
check "TLS 1.3 s_client handshakes" 0 sh -c "openssl s_client -connect 127.0.0.1:$PORT -tls1_3 -CAfile $P/ca.pem -cert $P/admin.pem -key $P/admin.key </dev/null 2>&1 | grep -q 'New, TLSv1.3'"
grep -q "certificate has expired" "$D/serve.log" && { echo "PASS expiry logged"; pass=$((pass+1)); } || { echo "FAIL expiry not logged"; fail=$((fail+1)); }
grep -q "no URI SAN" "$D/serve.log" && { echo "PASS missing SPIFFE ID logged"; pass=$((pass+1)); } || { echo "FAIL missing SPIFFE ID not logged"; fail=$((fail+1)); }
for r in "is not in this node's trust domain" "kind is not user, sensor, service or node" \
	"path is not /<org>/<kind>/<name>" "character outside" "is a CA certificate" \
	"extended key usage does not include clientAuth" "no key usage extension" "keyCertSign or cRLSign" \
	"valid longer than ca.max_cert_lifetime" "'.' or '..' path segment"; do
	grep -q "TLS handshake failed: .*$r" "$D/serve.log" && { echo "PASS logged: $r"; pass=$((pass+1)); } \
		|| { echo "FAIL not logged: $r"; fail=$((fail+1)); }
done
# the audit log has each decision, and verifies
kill -TERM $PID; wait $PID
"$KZ" audit verify --data "$D/var" > "$D/verify.out" 2>&1 && grep -q "intact" "$D/verify.out" \
	&& { echo "PASS audit log verifies"; pass=$((pass+1)); } || { echo "FAIL audit verify: $(cat "$D/verify.out")"; fail=$((fail+1)); }
n=$("$KZ" audit show --data "$D/var" --action tls --decision deny | wc -l)
[ "$n" -ge 10 ] && { echo "PASS refused handshakes audited ($n)"; pass=$((pass+1)); } || { echo "FAIL refused handshakes audited: $n"; fail=$((fail+1)); }
"$KZ" audit show --data "$D/var" --action tls --decision allow | grep -q '"subject":"spiffe://kizuna.local/meti/sensor/radar-1","serial":"[0-9A-F]*","issuer":"[^"]*","group":"x25519","tls":"TLSv1.3 TLS_[A-Z0-9_]*","addr":"127.0.0.1:[0-9]*"' \
	&& { echo "PASS accepted identity audited with serial and group"; pass=$((pass+1)); } || { echo "FAIL accepted identity not audited"; fail=$((fail+1)); }
"$KZ" audit show --data "$D/var" --decision deny | grep -q '"reason":"SPIFFE ID is not in this node' \
	&& { echo "PASS the refusal reason is in the entry"; pass=$((pass+1)); } || { echo "FAIL refusal reason not audited"; fail=$((fail+1)); }
sed -i '3s/"t":"2/"t":"1/' "$D/var/audit/audit.log"
"$KZ" audit verify --data "$D/var" > "$D/verify.out" 2>&1; rc=$?
[ "$rc" = 1 ] && grep -q "line 3 (entry 3): hash mismatch" "$D/verify.out" \
	&& { echo "PASS an edited entry is found"; pass=$((pass+1)); } || { echo "FAIL tamper: rc=$rc $(cat "$D/verify.out")"; fail=$((fail+1)); }
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
