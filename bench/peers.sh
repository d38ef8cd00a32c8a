# bench/peers.sh — sourced by the comparison scripts: starts kizuna, Mosquitto 2.0.11 and
# nats-server 2.9.10 (its MQTT listener) on loopback ports, all TLS 1.3 with client
# certificates from one development PKI. Sets D (temp dir), PKI, KP/MP/NP (ports) and
# KPID/MPID/NPID; everything is stopped and removed on exit.
# Optional: KZ_CONF (extra kizuna.conf lines), MOSQ_PERSIST=1 (Mosquitto persistence on,
# in $D/mosq-db, with its default autosave_interval of 1800 s).
D=$(mktemp -d /tmp/kz-bench-XXXXXX); chmod 755 "$D"  # mosquitto drops to its own user
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

KP=$(port); MP=$(port); NP=$(port)
printf 'mqtt.listen = 127.0.0.1:%s\nhttps.listen = 127.0.0.1:0\npolicy.open = 1\nlimits.identity = default connections=0 publish_rate=0 publish_bytes=0 https_rate=0\nlog_level = warn\n%s\n' "$KP" "${KZ_CONF:-}" > "$D/kizuna.conf"
"$KZ" serve --config "$D/kizuna.conf" --data "$D/var" > "$D/kizuna.log" 2>&1 & KPID=$!; PIDS+=($KPID)
wait_port "$KP" || { echo "kizuna did not start"; exit 1; }
PKI=$D/var/pki
MOSQ_P=false; [ -n "${MOSQ_PERSIST:-}" ] && MOSQ_P=true
mkdir -p "$D/m"; cp "$PKI"/{ca.pem,server.pem,server.key} "$D/m/"; chmod 644 "$D/m/"*; chmod 755 "$D/m"
cat > "$D/mosquitto.conf" <<CONF
listener $MP 127.0.0.1
cafile $D/m/ca.pem
certfile $D/m/server.pem
keyfile $D/m/server.key
require_certificate true
tls_version tlsv1.3
persistence $MOSQ_P
persistence_location $D/mosq-db/
allow_anonymous true
log_dest none
CONF
mkdir -p "$D/mosq-db"; chmod 777 "$D/mosq-db"
mosquitto -c "$D/mosquitto.conf" > "$D/mosquitto.log" 2>&1 & MPID=$!; PIDS+=($MPID)
cat > "$D/nats.conf" <<CONF
server_name: kzbench
listen: 127.0.0.1:$(port)
jetstream { store_dir: "$D/js" }
mqtt {
  listen: 127.0.0.1:$NP
  tls { cert_file: "$PKI/server.pem", key_file: "$PKI/server.key", ca_file: "$PKI/ca.pem", verify: true, timeout: 5 }
}
CONF
nats-server -c "$D/nats.conf" > "$D/nats.log" 2>&1 & NPID=$!; PIDS+=($NPID)
wait_port "$MP" || { echo "mosquitto did not start: $(cat "$D/mosquitto.log")"; exit 1; }
wait_port "$NP" || { echo "nats-server did not start: $(cat "$D/nats.log")"; exit 1; }

