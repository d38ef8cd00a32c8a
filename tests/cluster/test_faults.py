#!/usr/bin/python3
"""Faults under load with a checker (issue 19 item 9, docs/CLUSTER.md "Faults and what each
does"): 3 nats-servers (JetStream R3) and 3 nodes from scripts/cluster-up. Publishers on
every node (QoS 1 on nodes 1 and 3, QoS 2 on node 2; raw MQTT 5, one message in flight, each
acknowledgement's reason code read) and a subscriber on every node (paho, QoS 2, persistent
session). While they run:
  1. kill -9 of one nats-server, restarted 3 s later;
  2. SIGSTOP of another nats-server for 10 s;
  3. kill -9 of node 3: its publisher fails over to node 1 (its list: n3, n1, n2); its
     subscriber is gone with it.
The checker records every acknowledgement (PUBACK / PUBREC with a reason code below 0x80) and
every delivery, and asserts after the load: every acknowledged message reached every live
subscriber at least once (none lost), each publisher's acknowledged messages reached each
subscriber in order (first deliveries increasing; a message whose acknowledgement the
publisher gave up waiting for, after 5 s, may come at any time), duplicates counted and reported, and how long
publishing was interrupted at most (reported, the target is 5 s).

The longer soak (scripts/soak-cluster, not in make test): with KZ_SOAK_MINUTES set, the faults
are drawn at random (seed KZ_SOAK_SEED, printed) for that long, 5-10 s apart: kill -9 of a
nats-server (restarted 3 s later), SIGSTOP of one for 10 s, kill -9 of a node (restarted 3 s
later: its subscriber, with its persistent session, connects again to it), kill -9 of
every nats-server at once (restarted 3 s later), and the same with the JetStream directories
of two of them deleted (a power loss that took what they had not synced). The same checker then runs over all three
subscribers."""
import os, random, shutil, signal, socket, ssl, struct, subprocess, sys, threading, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from threeup import Cluster, free_base
from kzharness import KIZUNA, s16, varint, Node
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

CL = Cluster("kz-faults-", free_base(45))
D, BASE, PKI, PORT, logtext, pids = CL.dir, CL.base, CL.pki, CL.port, CL.logtext, CL.pids


class Publisher(threading.Thread):
    """Raw MQTT 5: one message in flight; a reason code >= 0x80 or a lost connection is not an
    acknowledgement; after a lost connection it goes to the next node of its list."""

    def __init__(self, name, nodes, qos):
        super().__init__(daemon=True)
        self.name, self.nodes, self.qos = name, nodes, qos
        self.acked, self.refused, self.lost = [], 0, 0
        self.stop = False
        self.k = 0
        self.gap = 0.0  # the longest time between two acknowledgements
        self.gap_at = 0.0  # when it began
        self.events = []
        self.cur = 0

    def connect(self):
        ctx = ssl.create_default_context(cafile=os.path.join(PKI, "ca.pem"))
        ctx.load_cert_chain(os.path.join(PKI, "admin.pem"), os.path.join(PKI, "admin.key"))
        while not self.stop:
            port = PORT[self.nodes[self.cur % len(self.nodes)]]
            try:
                s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 2), server_hostname="localhost")
                s.settimeout(5)
                body = s16(b"MQTT") + bytes([5, 2]) + struct.pack("!H", 30) + varint(0) + s16(self.name.encode())
                s.sendall(bytes([0x10]) + varint(len(body)) + body)
                p = self.packet(s)
                if p and p[0] == 2 and p[2][1] == 0:
                    return s
            except (OSError, ssl.SSLError):
                pass
            self.cur += 1
            time.sleep(0.2)
        return None

    def packet(self, s):
        buf = getattr(self, "buf", b"")
        while True:
            if len(buf) >= 2:
                n, mult, i = 0, 1, 1
                while i < len(buf) and i < 5:
                    n += (buf[i] & 0x7F) * mult
                    mult *= 128
                    if not buf[i] & 0x80:
                        break
                    i += 1
                if i < len(buf) and len(buf) >= i + 1 + n:
                    p = buf[:i + 1 + n]
                    self.buf = buf[i + 1 + n:]
                    return (p[0] >> 4, p[0] & 15, p[i + 1:])
            d = s.recv(65536)
            if not d:
                self.buf = b""
                return None
            buf += d

    def run(self):
        s = self.connect()
        last = time.time()
        pid = 0
        while not self.stop and s:
            self.k += 1
            pid = pid % 65535 + 1
            payload = ("%s-%d" % (self.name, self.k)).encode()
            body = s16(("chk/" + self.name).encode()) + struct.pack("!H", pid) + varint(0) + payload
            ok = False
            try:
                s.sendall(bytes([0x30 | (self.qos << 1)]) + varint(len(body)) + body)
                p = self.packet(s)
                if p and p[0] in (4, 5):
                    rc = p[2][2] if len(p[2]) > 2 else 0
                    if rc < 0x80:
                        if p[0] == 5:  # QoS 2: the node has it; release it
                            s.sendall(bytes([0x62, 2]) + struct.pack("!H", pid))
                            q = self.packet(s)
                            ok = q is not None and q[0] == 7
                        else:
                            ok = True
                    else:
                        self.refused += 1
                elif p is None:
                    raise OSError("closed")
            except (OSError, ssl.SSLError):
                self.lost += 1
                self.cur += 1
                self.events.append((time.time(), "%s-%d: connection lost, to node %d" % (
                    self.name, self.k, self.nodes[self.cur % len(self.nodes)])))
                self.buf = b""
                s = self.connect()
            if ok:
                now = time.time()
                if now - last > self.gap:
                    self.gap, self.gap_at = now - last, last
                last = now
                self.acked.append(self.k)
            time.sleep(0.01)


class Subscriber:
    def __init__(self, node):
        self.node, self.got = node, []
        self.c = mqtt.Client(client_id="chk-sub-%d" % node, protocol=mqtt.MQTTv5)
        self.c.tls_set(ca_certs=os.path.join(PKI, "ca.pem"), certfile=os.path.join(PKI, "admin.pem"),
                       keyfile=os.path.join(PKI, "admin.key"))
        self.at, self.events = [], []  # each delivery's time; (time, "connected" | "lost")
        self.c.on_message = lambda c, u, m: (self.got.append(m.payload.decode()), self.at.append(time.time()))
        self.c.on_connect = lambda c, u, f, rc, p=None: self.events.append((time.time(), "connected rc %s" % rc))
        self.c.on_disconnect = lambda c, u, rc, p=None: self.events.append((time.time(), "lost rc %s" % rc))
        p = Properties(PacketTypes.CONNECT)
        p.SessionExpiryInterval = 600
        self.c.connect("localhost", PORT[node], 30, clean_start=False, properties=p)
        self.stopped = False
        # paho's client is not safe to use from two threads at once unless its own loop_start
        # thread runs it: with loop_forever in a thread of ours, a disconnect() or subscribe()
        # from the main thread writes to the TLS socket while that thread reads it. Two
        # threads in one OpenSSL connection corrupted the heap once (a CI run: "free():
        # corrupted unsorted chunks" when subs[3].stop() ran while node 3, just killed, was
        # being connected again). So every use of the client holds this lock.
        self.lock = threading.Lock()
        threading.Thread(target=self.loop, daemon=True).start()
        time.sleep(0.5)
        with self.lock:
            self.c.subscribe("chk/#", qos=2)

    def loop(self):
        """paho's network loop, one short step at a time under the lock, connecting again
        when the connection is lost. Not loop_forever: paho 1.6 (Debian 12) lets an
        SSLEOFError from a write to a node killed under it escape, and its loop_start thread
        then ends for good (a soak, seed 707: that subscriber received nothing more, and
        every later message counted as lost)."""
        while not self.stopped:
            with self.lock:
                if self.stopped:
                    break
                try:
                    rc = self.c.loop(0.05)
                except Exception as e:
                    self.events.append((time.time(), "paho's loop failed: %r" % e))
                    rc = -1
                if rc != 0:
                    try:
                        self.c.reconnect()
                        rc = 0
                    except Exception:
                        pass
            time.sleep(0.5 if rc != 0 else 0.001)

    def stop(self):
        with self.lock:
            self.stopped = True
            self.c.disconnect()


def metrics(i):
    """Node i's /metrics as {name: value} ({} when it does not answer)."""
    import requests
    try:
        t = requests.get("https://localhost:%d/metrics" % (BASE + 39 + i), timeout=10, verify=os.path.join(PKI, "ca.pem"),
                         cert=(os.path.join(PKI, "admin.pem"), os.path.join(PKI, "admin.key"))).text
    except Exception:
        return {}
    out = {}
    for l in t.splitlines():
        if l and not l.startswith("#") and " " in l:
            k, v = l.rsplit(" ", 1)
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def behind_of(i):
    """How many records of the stream node i's follower has not taken yet, or taken and not
    acknowledged (None: unknown)."""
    st = subprocess.run([KIZUNA, "cluster", "status", "--config", os.path.join(D, "n%d" % i, "kizuna.conf")],
                        capture_output=True, text=True, timeout=30).stdout
    for l in st.splitlines():
        if l.startswith("follower: ") and " messages behind" in l:
            parts = l.split(", ")
            return int(parts[1].split()[0]) + int(parts[2].split()[0])
    return None


def nats_pid(i):
    return pids()[i - 1]


start_nats, start_node = CL.start_nats, CL.start_node


SOAK = float(os.environ.get("KZ_SOAK_MINUTES", "0"))
T0 = time.time()


def soak_faults():
    """Random faults for SOAK minutes; every process is running again at the end."""
    seed = int(os.environ.get("KZ_SOAK_SEED", str(int(time.time()))))
    rnd, t0, n = random.Random(seed), T0, 0
    print("  soak: %.0f minutes, seed %d" % (SOAK, seed))
    while time.time() - t0 < SOAK * 60:
        kind, i = rnd.choice(["kill-nats", "kill-nats", "stop-nats", "kill-node", "kill-node", "kill-all-nats",
                              "power-loss"]), rnd.randint(1, 3)
        n += 1
        print("  %4.0f s: fault %d: %s%s" % (time.time() - t0, n, kind, "" if kind == "kill-all-nats" else
                                              " (data of all but %d gone)" % i if kind == "power-loss" else " %d" % i))
        sys.stdout.flush()
        if kind == "kill-nats":
            os.kill(nats_pid(i), signal.SIGKILL)
            time.sleep(3)
            start_nats(i)
        elif kind == "stop-nats":
            os.kill(nats_pid(i), signal.SIGSTOP)
            time.sleep(10)
            os.kill(nats_pid(i), signal.SIGCONT)
        elif kind == "kill-node":
            os.kill(pids()[2 + i], signal.SIGKILL)
            time.sleep(3)
            start_node(i)
        else:  # kill-all-nats; power-loss: and the JetStream data of two of them is gone
            for k in (1, 2, 3):
                os.kill(nats_pid(k), signal.SIGKILL)
            if kind == "power-loss":
                time.sleep(0.5)
                for k in (1, 2, 3):
                    if k != i:
                        shutil.rmtree(os.path.join(D, "s%d" % k, "js"), ignore_errors=True)
            time.sleep(3)
            for k in (1, 2, 3):
                start_nats(k)
        time.sleep(rnd.uniform(5, 10))
    print("  soak: %d faults in %.0f s" % (n, time.time() - t0))


def test_no_acknowledged_message_lost_under_faults():
    subs = {i: Subscriber(i) for i in (1, 2, 3)}
    time.sleep(1.0)
    pubs = [Publisher("p1", [1, 2, 3], 1), Publisher("p2", [2, 3, 1], 2), Publisher("p3", [3, 1, 2], 1)]
    for p in pubs:
        p.start()
    time.sleep(3)
    live = (1, 2, 3) if SOAK else (1, 2)
    if SOAK:
        soak_faults()
    else:
        # 1. kill -9 one nats-server, restart it
        os.kill(nats_pid(3), signal.SIGKILL)
        time.sleep(3)
        start_nats(3)
        time.sleep(5)
        # 2. SIGSTOP another for 10 s
        os.kill(nats_pid(2), signal.SIGSTOP)
        time.sleep(10)
        os.kill(nats_pid(2), signal.SIGCONT)
        time.sleep(5)
        # 3. kill -9 node 3
        os.kill(pids()[5], signal.SIGKILL)
        subs[3].stop()
    time.sleep(8)
    for p in pubs:
        p.stop = True
    for p in pubs:
        p.join(15)
    # what is acknowledged reaches every node: wait until both surviving nodes' records are
    # confirmed by JetStream, their followers have taken everything the stream holds, neither
    # holds records back behind a gap, and the
    # deliveries stopped growing for 3 s (at most 120 s: a follower whose acknowledgements were
    # lost waits for JetStream's AckWait, 30 s, before the records come again)
    still, last, deadline = 0, None, time.time() + 120
    while time.time() < deadline and still < 3:
        time.sleep(1)
        now = tuple(len(subs[i].got) for i in live)
        m = [metrics(i) for i in live]
        held = sum(x.get("kizuna_cluster_held", 0) for x in m)
        # a record a node acknowledged is on its disk; it reaches the others once JetStream
        # confirms it: wait for every node's published records to be confirmed
        unconfirmed = sum(x.get("kizuna_cluster_pending", 1) + 1 - x.get("kizuna_cluster_quorum", 0) for x in m)
        behind = [behind_of(i) for i in live]
        still = still + 1 if now == last and held == 0 and unconfirmed == 0 and behind == [0] * len(live) else 0
        last = now
    if still < 3:
        print("  the cluster did not settle within 120 s")
    report = []
    lost = {}
    disorder = []
    for i in live:
        got = subs[i].got
        dups = len(got) - len(set(got))
        for p in pubs:
            acked = set(p.acked)
            mine = [int(x.split("-")[1]) for x in got if x.startswith(p.name + "-")]
            firsts, seen = [], set()
            for k in mine:
                if k not in seen:
                    seen.add(k)
                    if k in acked:  # one it gave up on (no acknowledgement) has no place in its order
                        firsts.append(k)
            missing = [k for k in p.acked if k not in seen]
            if missing:
                lost["%s on node %d" % (p.name, i)] = missing[:10]
            if firsts != sorted(firsts):
                disorder.append("%s on node %d: %r" % (p.name, i, [(a, b) for a, b in zip(firsts, firsts[1:]) if b < a][:5]))
                if SOAK:  # when the late one came, and what the subscriber saw around it
                    when = {}
                    for x, t in zip(got, subs[i].at):
                        when.setdefault(x, t)
                    for a, b in [(a, b) for a, b in zip(firsts, firsts[1:]) if b < a][:3]:
                        tb, ta = when["%s-%d" % (p.name, b)], when["%s-%d" % (p.name, a)]
                        ev = ["%.1f %s" % (t - T0, e) for t, e in subs[i].events + p.events if tb - 30 < t < tb + 5]
                        print("  %s-%d at %.1f s after %s-%d at %.1f s; subscriber %d: %s" % (
                            p.name, b, tb - T0, p.name, a, ta - T0, i, ", ".join(ev) or "no reconnection"))
        report.append("node %d: %d deliveries, %d duplicates" % (i, len(got), dups))
    for p in pubs:
        report.append("%s (QoS %d): %d acknowledged, %d refused, %d connections lost, longest wait between two "
                      "acknowledgements %.1f s (from %.0f s)" % (p.name, p.qos, len(p.acked), p.refused, p.lost, p.gap,
                                                       p.gap_at - T0))
    print("  " + "\n  ".join(report))
    if lost:  # what the surviving nodes say of their followers
        import requests
        for i in live:
            try:
                t = requests.get("https://localhost:%d/metrics" % (BASE + 39 + i), timeout=10,
                                 verify=os.path.join(PKI, "ca.pem"),
                                 cert=(os.path.join(PKI, "admin.pem"), os.path.join(PKI, "admin.key"))).text
                print("  node %d: %s" % (i, " ".join(l for l in t.splitlines() if l.startswith("kizuna_cluster_"))))
            except Exception as e:
                print("  node %d metrics: %s" % (i, e))
            st = subprocess.run([KIZUNA, "cluster", "status", "--config", os.path.join(D, "n%d" % i, "kizuna.conf")],
                                capture_output=True, text=True, timeout=30)
            print("  node %d status: %s" % (i, (st.stdout + st.stderr).replace("\n", " | ")))
    assert not lost, "acknowledged and not delivered: %r" % lost
    # order: kept, except where a node says it gave up waiting for a gap (cluster.gap_timeout_ms,
    # documented in docs/CLUSTER.md): then reported, not failed
    # and where a node answered a failed-over publisher's CONNECT at cluster.failover_order_ms
    # before it had caught up (docs/CLUSTER.md "Order across a failover")
    # Counted in the nodes' logs, which outlive a restart: the /metrics counters of a node
    # killed by the soak start again at 0 (a soak with node kills lost its excuses that way)
    def logged(needle):
        return sum(logtext(i).count(needle) for i in (1, 2, 3))
    released = max(sum(metrics(i).get("kizuna_cluster_released_out_of_order_total", 0) for i in live),
                   logged("(cluster.gap_timeout_ms): the "))
    expired = max(sum(metrics(i).get("kizuna_cluster_failover_order_expired_total", 0) for i in live),
                  logged("(cluster.failover_order_ms): a CONNECT is answered now"))
    if disorder:
        print("  out of order: %s; records released after cluster.gap_timeout_ms: %d; CONNECTs answered at "
              "cluster.failover_order_ms: %d" % ("; ".join(disorder), released, expired))
    assert not disorder or released > 0 or expired > 0, \
        "out of order without a gap timeout or an expired wait: %s" % "; ".join(disorder)
    assert all(len(p.acked) > 50 for p in pubs), [len(p.acked) for p in pubs]
    for s in subs.values():
        s.stop()


CL.run(test_no_acknowledged_message_lost_under_faults)
