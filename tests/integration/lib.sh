# lib.sh — shared by the shell integration tests: start a node on a free port.
# Sets D (temp dir), PORT, P (pki dir), PID; cleans up on exit.
kz_start() {
	KZ=$1; shift
	D=$(mktemp -d /tmp/kz-it-XXXXXX)
	trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
	PORT=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
	printf 'mqtt.listen = 127.0.0.1:%s\nhttps.listen = 127.0.0.1:0\npolicy.open = 1\n%s\n' "$PORT" "${1:-}" > "$D/k.conf"
	"$KZ" serve --config "$D/k.conf" --data "$D/var" > "$D/serve.log" 2>&1 &
	PID=$!
	for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
	P=$D/var/pki
	pass=0; fail=0
}
ok() { echo "PASS $1"; pass=$((pass+1)); }
ko() { echo "FAIL $1"; fail=$((fail+1)); }
expect_eq() { if [ "$2" = "$3" ]; then ok "$1"; else ko "$1: got '$2', want '$3'"; fi; }
kz_finish() { echo "$pass passed, $fail failed"; [ "$fail" = 0 ]; }
