# Sourced by bench/taxii-first.sh and bench/taxii-big.sh: one node for TAXII POSTs.
# taxii_node NAME [EXTRA_CONFIG]: a data directory D (under /tmp) and a work directory W (on
# tmpfs when there is one: the bench's own files apart from the node's file system, see
# bench/taxii.sh), KZ serving on free loopback ports (HTTPS on HP, store.fsync = always, no
# limits), PID, and the first collection's id in COLL; all removed at exit.
port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
taxii_node() {
	D=$(mktemp -d "/tmp/kz-bench-$1.XXXXXX")
	W=$(mktemp -d "/dev/shm/kz-bench-$1.XXXXXX" 2>/dev/null || mktemp -d "/tmp/kz-bench-$1-w.XXXXXX")
	PID=
	trap 'kill $PID 2>/dev/null; wait 2>/dev/null; rm -rf "$D" "$W"' EXIT
	HP=$(port); MP=$(port)
	printf 'mqtt.listen = 127.0.0.1:%s\nhttps.listen = 127.0.0.1:%s\npolicy.open = 1\nlimits.identity = default connections=0 publish_rate=0 publish_bytes=0 https_rate=0\nlog_level = warn\nstore.fsync = always\n%s' "$MP" "$HP" "${2:-}" > "$D/k.conf"
	"$KZ" serve --config "$D/k.conf" --data "$D/var" >> "$D/serve.log" 2>&1 & PID=$!
	for _ in $(seq 1 600); do curl -s -o /dev/null --cacert "$D/var/pki/ca.pem" "https://localhost:$HP/healthz" 2>/dev/null && break; sleep 0.1; done
	COLL=$(/usr/bin/python3 -c "import json;print(json.load(open('$D/var/taxii-collections.json'))[0]['id'])")
}
