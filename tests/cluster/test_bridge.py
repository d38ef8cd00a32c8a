#!/usr/bin/python3
"""The bridge (docs/CLUSTER.md "The bridge"): 3 nats-servers (JetStream R3) and 3 nodes from
scripts/cluster-up.
1. KZ_BRIDGE exists and its leader is kept off KZ_RECORDS's server: after the test asks
   KZ_BRIDGE's leader to step down until both streams have the same leader, the nodes part
   them again (and say so in their log).
2. The machine that leads KZ_RECORDS dies: its nats-server and its node, SIGKILL. nats-server
   2.9 waits at least 4 s before the survivors elect a new leader; QoS 1 publishers on the two
   other nodes (raw MQTT 5, one message in flight) must be acknowledged meanwhile, through the
   bridge. Asserted: both nodes bridged (kizuna_cluster_bridged_total > 0); every acknowledged
   message reaches the subscribers on both surviving nodes, each publisher's in order.
   Reported: how long each publisher waited at most between two acknowledgements.
3. The machine comes back: every record of the two publishing nodes is in KZ_RECORDS, none
   missing (`kizuna cluster status --records`): the bridge never stands in for it."""
import json, os, signal, socket, ssl, struct, subprocess, sys, threading, time, urllib.request
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from threeup import Cluster, free_base
from kzharness import KIZUNA, s16, varint
import paho.mqtt.client as mqtt
import re

CL = Cluster("kz-bridge-", free_base(45))
D, BASE, PKI, PORT, logtext, pids = CL.dir, CL.base, CL.pki, CL.port, CL.logtext, CL.pids


def leaders():
    """{stream name: the number of the server leading it} from any live server's /jsz."""
    for i in (1, 2, 3):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/jsz?streams=true" % (BASE + 19 + i), timeout=2) as r:
                j = json.load(r)
        except (OSError, ValueError):
            continue
        out = {}
        for acc in j.get("account_details", []):
            for st in acc.get("stream_detail", []):
                ld = st.get("cluster", {}).get("leader", "")
                if ld.startswith("s"):
                    out[st["name"]] = int(ld[1:])
        if out:
            return out
    return {}


def nats_request(i, subject):
    """A request through nats-server i with node i's NATS certificate; the answer as JSON."""
    ctx = ssl.create_default_context(cafile=os.path.join(PKI, "ca.pem"))
    ctx.check_hostname = False
    cert = os.path.join(D, "n%d" % i, "nodecert")
    ctx.load_cert_chain(os.path.join(cert, "cert.pem"), os.path.join(cert, "key.pem"))
    raw = socket.create_connection(("127.0.0.1", BASE + i - 1), 5)
    assert raw.makefile("rb").readline().startswith(b"INFO "), "no INFO from nats-server %d" % i
    s = ctx.wrap_socket(raw)
    f = s.makefile("rb")
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"tls_required":true}\r\n'
              b"SUB _INBOX.kzbridge 1\r\nPUB %s _INBOX.kzbridge 0\r\n\r\n" % subject.encode())
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


def tls():
    ctx = ssl.create_default_context(cafile=os.path.join(PKI, "ca.pem"))
    ctx.load_cert_chain(os.path.join(PKI, "admin.pem"), os.path.join(PKI, "admin.key"))
    return ctx


class Publisher(threading.Thread):
    """Raw MQTT 5 QoS 1 on one node, one message in flight; a refusal (reason >= 0x80) or no
    answer within 20 s is not an acknowledgement."""

    def __init__(self, name, node):
        super().__init__(daemon=True)
        self.name, self.node = name, node
        self.acked, self.refused, self.k, self.stop, self.gap, self.lost = [], 0, 0, False, 0.0, 0

    def connect(self):
        while not self.stop:
            try:
                s = tls().wrap_socket(socket.create_connection(("127.0.0.1", PORT[self.node]), 2),
                                      server_hostname="localhost")
                s.settimeout(20)
                body = s16(b"MQTT") + bytes([5, 2]) + struct.pack("!H", 60) + varint(0) + s16(self.name.encode())
                s.sendall(bytes([0x10]) + varint(len(body)) + body)
                if s.recv(4096)[:1] == b"\x20":
                    return s
            except (OSError, ssl.SSLError):
                pass
            time.sleep(0.2)

    def run(self):
        s, last = self.connect(), time.time()
        while not self.stop:
            self.k += 1
            payload = ("%s-%d" % (self.name, self.k)).encode()
            body = s16(("brg/" + self.name).encode()) + struct.pack("!H", self.k % 65535 + 1) + varint(0) + payload
            try:
                s.sendall(bytes([0x32]) + varint(len(body)) + body)
                p = s.recv(4096)
                if not p:
                    raise OSError("closed")
                if p[0] == 0x40 and (len(p) < 5 or p[4] < 0x80):
                    now = time.time()
                    self.gap = max(self.gap, now - last)
                    last = now
                    self.acked.append(self.k)
                else:
                    self.refused += 1
            except (OSError, ssl.SSLError):
                self.lost += 1
                s = self.connect()
            time.sleep(0.02)


def subscriber(node):
    got = []
    c = mqtt.Client(client_id="brg-sub-%d" % node, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=os.path.join(PKI, "ca.pem"), certfile=os.path.join(PKI, "admin.pem"),
              keyfile=os.path.join(PKI, "admin.key"))
    c.on_message = lambda c_, u, m: got.append(m.payload.decode())
    c.connect("localhost", PORT[node], 30)
    c.loop_start()
    time.sleep(0.5)
    c.subscribe("brg/#", qos=1)
    return c, got


def wait_apart(timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        ld = leaders()
        if "KZ_RECORDS" in ld and "KZ_BRIDGE" in ld and ld["KZ_RECORDS"] != ld["KZ_BRIDGE"]:
            return ld
        time.sleep(0.2)
    raise AssertionError("KZ_BRIDGE and KZ_RECORDS not led by different servers within %d s: %r" % (timeout, leaders()))


def test_bridge_acknowledges_while_the_stream_elects_and_loses_nothing():
    # 1. kept apart
    wait_apart(60)
    together = False
    for _ in range(30):
        ld = leaders()
        if ld.get("KZ_RECORDS") == ld.get("KZ_BRIDGE") and "KZ_BRIDGE" in ld:
            together = True
            break
        if "KZ_BRIDGE" in ld:
            try:
                nats_request(ld["KZ_BRIDGE"], "$JS.API.STREAM.LEADER.STEPDOWN.KZ_BRIDGE")
            except OSError:
                pass
        time.sleep(0.3)
    if together:
        ld = wait_apart(30)
        assert any("asking KZ_BRIDGE's leader to step down" in logtext(i) for i in (1, 2, 3)), \
            "the leaders came apart, but no node said it asked"
        print("  KZ_BRIDGE put on KZ_RECORDS's server by the test; the nodes parted them: %r" % ld)
    else:
        print("  (the test's stepdowns never put KZ_BRIDGE on KZ_RECORDS's server; parting not exercised)")
    ld = wait_apart(30)
    time.sleep(1.5)  # the nodes' own check, after the test's last stepdown
    ld = wait_apart(30)

    # 2. the machine that leads KZ_RECORDS dies
    L = ld["KZ_RECORDS"]
    live = [i for i in (1, 2, 3) if i != L]
    subs = {i: subscriber(i) for i in live}
    time.sleep(1.0)
    pubs = [Publisher("p%d" % i, i) for i in live]
    for p in pubs:
        p.start()
    time.sleep(3)
    before = {p.name: len(p.acked) for p in pubs}
    os.kill(pids()[L - 1], signal.SIGKILL)  # its nats-server
    os.kill(pids()[L + 2], signal.SIGKILL)  # its node
    t_kill = time.time()
    time.sleep(12)
    for p in pubs:
        p.stop = True
    for p in pubs:
        p.join(30)
    for p in pubs:
        print("  %s (node %d): %d acknowledged, %d after the kill, %d refused, longest wait between two "
              "acknowledgements %.2f s" % (p.name, p.node, len(p.acked), len(p.acked) - before[p.name], p.refused,
                                           p.gap))
        assert len(p.acked) > before[p.name], "%s: nothing acknowledged after the kill" % p.name
    for i in live:
        m = metrics_of(i)
        print("  node %d: bridged %d records in %d episodes, took %d from the bridge" % (
            i, m.get("kizuna_cluster_bridged_total", -1), m.get("kizuna_cluster_bridge_episodes_total", -1),
            m.get("kizuna_cluster_bridge_taken_total", -1)))
        assert m.get("kizuna_cluster_bridged_total", 0) > 0, "node %d bridged nothing while KZ_RECORDS elected" % i

    # every acknowledged message on both surviving subscribers, each publisher's in order
    want = {p.name: set(p.acked) for p in pubs}

    def seen(i, name):
        return [int(x.split("-")[1]) for x in subs[i][1] if x.startswith(name + "-")]
    deadline = time.time() + 90
    while time.time() < deadline and not all(want[p.name] <= set(seen(i, p.name)) for p in pubs for i in live):
        time.sleep(0.3)
    for i in live:
        for p in pubs:
            got = seen(i, p.name)
            missing = sorted(want[p.name] - set(got))
            assert not missing, "node %d's subscriber lacks %d of %s's acknowledged messages, first %r" % (
                i, len(missing), p.name, missing[:10])
            first, order = set(), []
            for k in got:
                if k not in first:
                    first.add(k)
                    order.append(k)
            acked_order = [k for k in order if k in want[p.name]]
            assert acked_order == sorted(acked_order), "node %d got %s's messages out of order" % (i, p.name)
            print("  node %d's subscriber: all %d of %s's, in order, %d delivered twice" % (
                i, len(want[p.name]), p.name, len(got) - len(set(got))))
    for c, _ in subs.values():
        c.loop_stop()
        c.disconnect()

    # 3. the machine back: KZ_RECORDS has every record of the publishing nodes
    start(L)
    for i in live:
        deadline = time.time() + 90
        r = None
        while time.time() < deadline:
            r = records(i)
            if r and r[3] == 0 and r[0] >= len(pubs[live.index(i)].acked):
                break
            time.sleep(1)
        assert r and r[3] == 0 and r[0] >= len(pubs[live.index(i)].acked), \
            "node %d: KZ_RECORDS holds %r (records, messages, twice, missing) for %d acknowledged" % (
                i, r, len(pubs[live.index(i)].acked))
        print("  node %d: KZ_RECORDS holds its %d records, none missing" % (i, r[0]))


def metrics_of(i):
    import requests
    text = requests.get("https://localhost:%d/metrics" % (BASE + 39 + i), timeout=20,
                        verify=os.path.join(PKI, "ca.pem"),
                        cert=(os.path.join(PKI, "admin.pem"), os.path.join(PKI, "admin.key"))).text
    out = {}
    for l in text.splitlines():
        if l and not l.startswith("#") and " " in l:
            k, v = l.rsplit(" ", 1)
            out[k] = float(v)
    return out


def records(i):
    r = subprocess.run([KIZUNA, "cluster", "status", "--records", "--config", os.path.join(D, "n%d" % i, "kizuna.conf"),
                        "--data", os.path.join(D, "n%d" % i)], capture_output=True, text=True, timeout=60)
    m = re.search(r"this node's records stored: (\d+) in (\d+) messages, (\d+) more than once, (\d+) missing", r.stdout)
    return tuple(int(x) for x in m.groups()) if m else None


def set_pid(k, pid):
    lines = open(os.path.join(D, "pids")).read().split()
    lines[k] = str(pid)
    open(os.path.join(D, "pids"), "w").write("\n".join(lines) + "\n")


def start(i):
    pr = subprocess.Popen(["nats-server", "-c", os.path.join(D, "s%d" % i, "nats.conf")],
                          stdout=open(os.path.join(D, "s%d" % i, "nats.log"), "a"), stderr=subprocess.STDOUT)
    set_pid(i - 1, pr.pid)
    pr = subprocess.Popen([KIZUNA, "serve", "--config", os.path.join(D, "n%d" % i, "kizuna.conf")],
                          stdout=open(os.path.join(D, "n%d" % i, "serve.log"), "a"), stderr=subprocess.STDOUT)
    set_pid(2 + i, pr.pid)


CL.run(test_bridge_acknowledges_while_the_stream_elects_and_loses_nothing)
