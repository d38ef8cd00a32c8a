#!/usr/bin/python3
"""The cluster's replicator (docs/CLUSTER.md, issue 19): a node with cluster.nats publishes
every record it accepts to JetStream's KZ_RECORDS, acknowledges QoS 1 only once JetStream has
it too, refuses QoS 1 while JetStream does not answer (cluster.on_quorum_loss = refuse), and
publishes again from its own log what JetStream lost — here, all of a nats-server's files,
as a power loss that took its unsynced data would. One real nats-server 2.9 with JetStream and
mutual TLS, started by this test on loopback ports; replicas = 1 (one server)."""
import json, os, shutil, signal, struct, subprocess, sys, time, urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from kzharness import *

NATS = shutil.which("nats-server")
if not NATS:
    print("SKIP: nats-server is not installed (scripts/deps installs it)")
    sys.exit(77)

nats_port, nats_mon = free_port(), free_port()
node_dir = {}


def publish(raw, topic, payload, pid, qos=1):
    body = s16(topic) + struct.pack("!H", pid) + varint(0) + payload
    raw.send(bytes([0x30 | (qos << 1)]) + varint(len(body)) + body)


def puback(raw):
    """(packet id, reason code, reason string or "") of the next PUBACK."""
    p = raw.packet()
    assert p and p[0] == 4, "expected a PUBACK, got %r" % (p,)
    pid = struct.unpack("!H", p[2][:2])[0]
    rc = p[2][2] if len(p[2]) > 2 else 0
    why = ""
    if len(p[2]) > 4 and p[2][4] == 0x1F:
        n = struct.unpack("!H", p[2][5:7])[0]
        why = p[2][7:7 + n].decode()
    return pid, rc, why


def stream_messages():
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/jsz?streams=true" % nats_mon, timeout=2) as r:
            j = json.load(r)
    except OSError:
        return None
    for acc in j.get("account_details", []):
        for st in acc.get("stream_detail", []):
            if st["name"] == "KZ_RECORDS":
                return st["state"]["messages"]
    return 0


def wait_stream(n, timeout=20):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = stream_messages()
        if got == n:
            return got
        time.sleep(0.2)
    return got


class Nats:
    def __init__(self, pki, store):
        self.conf = os.path.join(os.path.dirname(store), "nats.conf")
        with open(self.conf, "w") as f:
            f.write("""server_name: kztest
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream { store_dir: "%s" }
tls { cert_file: "%s/server.pem", key_file: "%s/server.key", ca_file: "%s/ca.pem", verify: true, timeout: 5 }
""" % (nats_port, nats_mon, store, pki, pki, pki))
        self.store = store
        self.start()

    def start(self):
        self.log = open(self.conf + ".log", "a")
        self.p = subprocess.Popen([NATS, "-c", self.conf], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while stream_messages() is None and time.time() < deadline:
            time.sleep(0.1)

    def kill(self):
        self.p.kill()
        self.p.wait()


n = Node("node_id = n1\ncluster.nats = tls://127.0.0.1:%d\ncluster.replicas = 1\ncluster.publish_timeout_ms = 1000\n"
         "cluster.cert = %s\ncluster.key = %s\n" % (nats_port, "NODECERT/cert.pem", "NODECERT/key.pem"))
# the node made its PKI at start; its NATS certificate comes from the same CA (the
# replicator retries until the files and the server are there)
node_cert = os.path.join(n.dir, "nodecert")
subprocess.run([KIZUNA, "ca", "issue", "--data", n.data, "--id", "spiffe://kizuna.local/dev/node/n1", "--out",
                node_cert], check=True, capture_output=True)
with open(n.cfg) as f:
    text = f.read().replace("NODECERT", node_cert)
with open(n.cfg, "w") as f:
    f.write(text)
n.stop()
n.log = open(n.log.name, "a")
n.start()
nats = Nats(n.pki, os.path.join(n.dir, "js"))
deadline = time.time() + 30
while "JetStream answers" not in n.logtext() and time.time() < deadline:
    time.sleep(0.2)
assert "JetStream answers" in n.logtext(), n.logtext()[-3000:]


def test_acknowledged_only_once_in_jetstream():
    r = Raw(n)
    assert r.connect(b"repl-pub")[0] == 2
    for i in range(1, 201):
        publish(r, b"sensors/a", b"m-%d" % i, i)
    acks = [puback(r) for _ in range(200)]
    assert all(rc == 0 for _, rc, _ in acks), acks[:3]
    # every acknowledged record is in JetStream by the time its PUBACK came
    assert stream_messages() == 200, stream_messages()
    r.send(bytes([0xE0, 0]))


def test_refused_without_quorum_then_acknowledged():
    r = Raw(n)
    assert r.connect(b"repl-q")[0] == 2
    nats.p.send_signal(signal.SIGSTOP)
    try:
        publish(r, b"sensors/a", b"waits", 1)  # stored here; its PUBACK waits for JetStream
        time.sleep(2.5)  # past cluster.publish_timeout_ms: no quorum
        publish(r, b"sensors/a", b"refused", 2)
        pid, rc, why = puback(r)
        assert (pid, rc) == (2, 0x97), (pid, rc, why)
        assert "no JetStream quorum" in why, why
    finally:
        nats.p.send_signal(signal.SIGCONT)
    pid, rc, why = puback(r)
    assert (pid, rc) == (1, 0), (pid, rc, why)
    assert wait_stream(201) == 201, stream_messages()  # the refused one is nowhere
    r.send(bytes([0xE0, 0]))


def test_jetstream_files_lost_then_published_again():
    """kill -9 the server and delete its JetStream files: the node publishes every record
    again from its own log (what JetStream alone would have lost)."""
    nats.kill()
    shutil.rmtree(nats.store)
    nats.start()
    assert wait_stream(201, 30) == 201, stream_messages()
    assert "publishing the rest again from the log" in n.logtext()


def test_stops_cleanly():
    """SIGTERM with the replicator connected: the node waits for what is in flight, saves its
    watermark and exits 0 (under the sanitizers: with nothing leaked)."""
    r = Raw(n)
    assert r.connect(b"repl-last")[0] == 2
    publish(r, b"sensors/a", b"last", 1)
    assert puback(r)[1] == 0
    assert n.stop() == 0, n.logtext()[-2000:]
    with open(os.path.join(n.data, "cluster.state")) as f:
        assert f.read().startswith("confirmed "), "no watermark saved"
    assert "runtime error" not in n.logtext() and "AddressSanitizer" not in n.logtext()


run_tests([test_acknowledged_only_once_in_jetstream, test_refused_without_quorum_then_acknowledged,
           test_jetstream_files_lost_then_published_again, test_stops_cleanly])
nats.kill()
