"""The 3 nats-servers and 3 nodes of scripts/cluster-up, for the tests that need all of them
(test_faults.py, test_partition.py): ports laid out from one free base port, node i's log, its
MQTT port, and cluster-down at the end (the directory kept with KEEP=1)."""
import json, os, shutil, socket, ssl, struct, subprocess, sys, tempfile, threading, time, urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from kzharness import KIZUNA, s16, varint

if not shutil.which("nats-server"):
    print("SKIP: nats-server is not installed (scripts/deps installs it)")
    sys.exit(77)
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def free_base(count):
    return int(subprocess.run([os.path.join(ROOT, "scripts", "free-port-base"), str(count)], capture_output=True,
                              text=True, check=True).stdout)


class Cluster:
    def __init__(self, prefix, base, env=None):
        self.dir, self.base = tempfile.mkdtemp(prefix=prefix), base
        subprocess.run([os.path.join(ROOT, "scripts", "cluster-up"), self.dir, str(base)],
                       env=dict(os.environ, KZ=KIZUNA, **(env or {})), check=True, stdout=subprocess.DEVNULL)
        self.pki = os.path.join(self.dir, "n1", "pki")
        self.port = {i: base + 29 + i for i in (1, 2, 3)}
        deadline = time.time() + 120
        while time.time() < deadline and not all("JetStream answers" in self.logtext(i) for i in (1, 2, 3)):
            time.sleep(0.2)
        if not all("JetStream answers" in self.logtext(i) for i in (1, 2, 3)):
            # what each server and node said, then nothing left running (a CI run once failed
            # here with no more than this sentence to go on)
            self.dump_logs()
            self.down()
            raise AssertionError("nodes never reached JetStream within 120 s (base port %d)" % base)

    def dump_logs(self):
        for i in (1, 2, 3):
            for name, path in (("nats-server %d" % i, os.path.join(self.dir, "s%d" % i, "nats.log")),
                               ("node %d" % i, os.path.join(self.dir, "n%d" % i, "serve.log"))):
                try:
                    text = open(path, errors="replace").read()
                except OSError as e:
                    text = str(e)
                print("--- %s log (last 3000 bytes):\n%s" % (name, text[-3000:]))

    def logtext(self, i):
        return open(os.path.join(self.dir, "n%d" % i, "serve.log")).read()

    def pids(self):
        return [int(l) for l in open(os.path.join(self.dir, "pids")).read().split()]

    def set_pid(self, k, pid):
        """Line k of the pids file (0-2: nats-servers 1-3, 3-5: nodes 1-3), for cluster-down."""
        lines = open(os.path.join(self.dir, "pids")).read().split()
        lines[k] = str(pid)
        open(os.path.join(self.dir, "pids"), "w").write("\n".join(lines) + "\n")

    def start_nats(self, i):
        pr = subprocess.Popen(["nats-server", "-c", os.path.join(self.dir, "s%d" % i, "nats.conf")],
                              stdout=open(os.path.join(self.dir, "s%d" % i, "nats.log"), "a"), stderr=subprocess.STDOUT)
        self.set_pid(i - 1, pr.pid)

    def start_node(self, i):
        pr = subprocess.Popen([KIZUNA, "serve", "--config", os.path.join(self.dir, "n%d" % i, "kizuna.conf")],
                              stdout=open(os.path.join(self.dir, "n%d" % i, "serve.log"), "a"), stderr=subprocess.STDOUT)
        self.set_pid(2 + i, pr.pid)

    def leaders(self):
        """{stream name: the number of the server leading it} from any live server's /jsz."""
        for i in (1, 2, 3):
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/jsz?streams=true" % (self.base + 19 + i),
                                            timeout=2) as r:
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

    def wait_apart(self, timeout):
        """Waits until KZ_BRIDGE and KZ_RECORDS are led by different servers; their leaders."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            ld = self.leaders()
            if "KZ_RECORDS" in ld and "KZ_BRIDGE" in ld and ld["KZ_RECORDS"] != ld["KZ_BRIDGE"]:
                return ld
            time.sleep(0.2)
        raise AssertionError("KZ_BRIDGE and KZ_RECORDS not led by different servers within %d s: %r"
                             % (timeout, self.leaders()))

    def tls(self):
        """A client context with the PKI's admin certificate."""
        ctx = ssl.create_default_context(cafile=os.path.join(self.pki, "ca.pem"))
        ctx.load_cert_chain(os.path.join(self.pki, "admin.pem"), os.path.join(self.pki, "admin.key"))
        return ctx

    def metric(self, i, name):
        """Node i's /metrics value of name (None when it has none)."""
        import requests
        t = requests.get("https://localhost:%d/metrics" % (self.base + 39 + i), timeout=20,
                         verify=os.path.join(self.pki, "ca.pem"),
                         cert=(os.path.join(self.pki, "admin.pem"), os.path.join(self.pki, "admin.key"))).text
        for l in t.splitlines():
            if l.startswith(name + " "):
                return float(l.split()[1])
        return None

    def subscriber(self, node, prefix):
        """A paho MQTT 5 client on node, subscribed to prefix/# with QoS 1: (client, payloads)."""
        import paho.mqtt.client as mqtt
        got = []
        c = mqtt.Client(client_id="%s-sub-%d" % (prefix, node), protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=os.path.join(self.pki, "ca.pem"), certfile=os.path.join(self.pki, "admin.pem"),
                  keyfile=os.path.join(self.pki, "admin.key"))
        c.on_message = lambda c_, u, m: got.append(m.payload.decode())
        c.connect("localhost", self.port[node], 30)
        c.loop_start()
        time.sleep(0.5)
        c.subscribe(prefix + "/#", qos=1)
        return c, got


    def down(self):
        subprocess.run([os.path.join(ROOT, "scripts", "cluster-down"), self.dir], stdout=subprocess.DEVNULL)
        if not os.environ.get("KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, test, cleanup=None):
        """Runs test, prints PASS or FAIL (with the nodes' log tails), stops the cluster and
        exits with the result."""
        failed = 0
        try:
            test()
            print("PASS %s" % test.__name__)
        except Exception as e:
            import traceback
            traceback.print_exc()
            print("FAIL %s: %s" % (test.__name__, e))
            self.dump_logs()
            failed = 1
        finally:
            if cleanup:
                cleanup()
            self.down()
        print("%d passed, %d failed" % (1 - failed, failed))
        sys.exit(failed)


class Publisher(threading.Thread):
    """Raw MQTT 5 QoS 1 on one node of cl, one message in flight, to prefix/name with payloads
    name-1, name-2, ...; a refusal (reason >= 0x80) or no answer within timeout s is not an
    acknowledgement; a lost connection is made again. acked: the numbers acknowledged; gap:
    the longest time between two acknowledgements."""

    def __init__(self, cl, name, node, prefix, timeout):
        super().__init__(daemon=True)
        self.cl, self.name, self.node, self.prefix, self.timeout = cl, name, node, prefix, timeout
        self.acked, self.refused, self.k, self.stop, self.gap, self.lost = [], 0, 0, False, 0.0, 0

    def connect(self):
        while not self.stop:
            try:
                s = self.cl.tls().wrap_socket(socket.create_connection(("127.0.0.1", self.cl.port[self.node]), 2),
                                              server_hostname="localhost")
                s.settimeout(self.timeout)
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
            body = s16(("%s/%s" % (self.prefix, self.name)).encode()) + struct.pack("!H", self.k % 65535 + 1) + \
                varint(0) + payload
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


def stop_publishers(pubs, timeout):
    """Stops every publisher of pubs and waits up to timeout s for each."""
    for p in pubs:
        p.stop = True
    for p in pubs:
        p.join(timeout)


def check_delivered(pubs, subs, timeout):
    """Waits up to timeout s until every subscriber (subs: {node: (client, payloads)}) has every
    acknowledged message of every publisher; then ({"name on node i": first missing}, [out of
    order: "name on node i"], {"name on node i": delivered twice}). Order: the first deliveries
    of the acknowledged messages."""
    want = {p.name: set(p.acked) for p in pubs}

    def seen(got, name):
        return [int(x.split("-")[1]) for x in got if x.startswith(name + "-")]
    deadline = time.time() + timeout
    while time.time() < deadline and not all(want[p.name] <= set(seen(got, p.name)) for p in pubs
                                             for _, got in subs.values()):
        time.sleep(0.3)
    lost, disorder, twice = {}, [], {}
    for i, (_, got) in subs.items():
        for p in pubs:
            ks = seen(got, p.name)
            first, order = set(), []
            for k in ks:
                if k not in first:
                    first.add(k)
                    if k in want[p.name]:
                        order.append(k)
            key = "%s on node %d" % (p.name, i)
            missing = sorted(want[p.name] - first)
            if missing:
                lost[key] = missing[:10]
            if order != sorted(order):
                disorder.append(key)
            twice[key] = len(ks) - len(first)
    return lost, disorder, twice
