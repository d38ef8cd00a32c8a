"""Helpers of the cluster tests (docs/CLUSTER.md): a real nats-server 2.9 with JetStream
and mutual TLS, started on loopback ports with the nodes' PKI; kizuna nodes in a cluster with
node certificates from one CA; hand-built MQTT PUBLISH/PUBACK to see reason codes."""
import json, os, re, shutil, signal, struct, subprocess, sys, time, urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from kzharness import *

NATS = shutil.which("nats-server")
if not NATS:
    print("SKIP: nats-server is not installed (scripts/deps installs it)")
    sys.exit(77)

nats_port, nats_mon = free_port(), free_port()


def publish(raw, topic, payload, pid, qos=1):
    body = s16(topic) + struct.pack("!H", pid) + varint(0) + payload
    raw.send(bytes([0x30 | (qos << 1)]) + varint(len(body)) + body)


def publish_acked(raw, topic, prefix, count):
    """Publishes prefix-1 .. prefix-count at QoS 1 (packet ids 1..count) and asserts that every
    PUBACK says success."""
    for i in range(1, count + 1):
        publish(raw, topic, prefix + b"%d" % i, i)
    acks = [puback(raw) for _ in range(count)]
    assert all(rc == 0 for _, rc, _ in acks), [a for a in acks if a[1]][:3]


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


def stream_records(node):
    """(records stored, messages, records stored more than once, missing below the last, the
    most records in one message) of
    node's subject in KZ_RECORDS, from `kizuna cluster status --records`; None when it cannot
    tell. A message holds one record or a batch of several (docs/CLUSTER.md "Batches")."""
    r = subprocess.run([KIZUNA, "cluster", "status", "--records", "--config", node.cfg, "--data", node.data],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"this node's records stored: (\d+) in (\d+) messages, (\d+) more than once, (\d+) missing, "
                  r"\d+ messages not read as records, at most (\d+) records in one message", r.stdout)
    return tuple(int(x) for x in m.groups()) if m else None


def wait_records(node, n, timeout=20):
    """stream_records(node) once it says n records are stored (or at the timeout)."""
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = stream_records(node)
        if got and got[0] == n:
            return got
        time.sleep(0.3)
    return got


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
        # run_tests ends the process with sys.exit: the server must not outlive the test
        import atexit
        atexit.register(lambda: self.kill())

    def start(self):
        self.log = open(self.conf + ".log", "a")
        self.p = subprocess.Popen([NATS, "-c", self.conf], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while stream_messages() is None and time.time() < deadline:
            time.sleep(0.1)

    def kill(self):
        self.p.kill()
        self.p.wait()




def cluster_node(name, pki_from=None, extra=""):
    """A node in the cluster on nats_port, with its NATS certificate from pki_from's CA (its
    own when None: the first node makes the PKI); waits until JetStream answers it."""
    shared = ""
    if pki_from:
        p = pki_from.pki
        shared = ("ca.dir = %s\ntls.ca = %s/ca.pem\ntls.cert = %s/server.pem\ntls.key = %s/server.key\n"
                  % (p, p, p, p))
    n = Node("node_id = %s\ncluster.nats = tls://127.0.0.1:%d\ncluster.replicas = 1\n"
             "cluster.publish_timeout_ms = 1000\ncluster.cert = NODECERT/cert.pem\ncluster.key = NODECERT/key.pem\n%s%s"
             % (name, nats_port, shared, extra))
    if pki_from:
        n.pki = pki_from.pki
    cert = os.path.join(n.dir, "nodecert")
    subprocess.run([KIZUNA, "ca", "issue", "--data", (pki_from or n).data, "--id",
                    "spiffe://kizuna.local/dev/node/%s" % name, "--out", cert], check=True, capture_output=True)
    with open(n.cfg) as f:
        text = f.read().replace("NODECERT", cert)
    with open(n.cfg, "w") as f:
        f.write(text)
    n.stop()
    n.log = open(n.log.name, "a")
    n.start()
    return n


def two_nodes(extra=""):
    """Nodes n1 and n2 on one nats-server (n2 with n1's PKI), both sharing sessions: (a, b, nats)."""
    a = cluster_node("n1", extra=extra)
    nats = Nats(a.pki, os.path.join(a.dir, "js"))
    b = cluster_node("n2", pki_from=a, extra=extra)
    for n in (a, b):
        wait_log(n, "JetStream answers")
        wait_log(n, "sharing sessions")
    return a, b, nats


def metrics(n):
    """The node's /metrics (its HTTPS port from its log), as {name: value}."""
    import re, requests
    port = int(re.findall(r"HTTPS on 127\.0\.0\.1:(\d+)", n.logtext())[-1])
    # verify= per request: a REQUESTS_CA_BUNDLE in the environment would win over the session's
    text = requests.get("https://localhost:%d/metrics" % port, timeout=20, verify=os.path.join(n.pki, "ca.pem"),
                        cert=(os.path.join(n.pki, "admin.pem"), os.path.join(n.pki, "admin.key"))).text
    out = {}
    for l in text.splitlines():
        if l and not l.startswith("#") and " " in l:
            k, v = l.rsplit(" ", 1)
            out[k] = float(v)
    return out


def expiry(seconds):
    """CONNECT properties with a Session Expiry Interval."""
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = seconds
    return p


def drain(c, wait=1.5):
    """The payloads a test client gets until it has had none for wait seconds."""
    got = []
    while True:
        try:
            got.append(c.get(timeout=wait).payload.decode())
        except queue.Empty:
            return got


def wait_log(n, text, timeout=30):
    deadline = time.time() + timeout
    while text not in n.logtext() and time.time() < deadline:
        time.sleep(0.2)
    assert text in n.logtext(), n.logtext()[-3000:]


def js_request(node, subject, body, timeout=5):
    """One request to nats_port's JetStream API as a plain NATS client would make it, with
    node's NATS certificate: the answer as JSON."""
    return nats_request(nats_port, os.path.join(node.pki, "ca.pem"), os.path.join(node.dir, "nodecert"), subject,
                        json.dumps(body).encode(), timeout)


def nats_request(port, cafile, certdir, subject, data=b"", timeout=5):
    """A request to the nats-server on port as a plain NATS client would make it (TLS with the
    certificate in certdir, CONNECT, SUB on an inbox, PUB, then the MSG that answers): the
    answer as JSON."""
    import socket, ssl
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    ctx.load_cert_chain(os.path.join(certdir, "cert.pem"), os.path.join(certdir, "key.pem"))
    raw = socket.create_connection(("127.0.0.1", port), timeout)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"INFO "), "no INFO from nats-server"
    s = ctx.wrap_socket(raw)
    f = s.makefile("rb")
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"tls_required":true}\r\n'
              b"SUB _INBOX.kztest 1\r\nPUB %s _INBOX.kztest %d\r\n%s\r\n" % (subject.encode(), len(data), data))
    try:
        while True:
            line = f.readline()
            if not line:
                raise OSError("nats-server closed the connection")
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise OSError(line.decode().strip())
            elif line.startswith(b"MSG "):
                n = int(line.split()[-1])
                return json.loads(f.read(n + 2)[:n])
    finally:
        s.close()
