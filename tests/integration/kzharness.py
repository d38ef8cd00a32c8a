"""Integration harness: starts a real `kizuna serve` on a free loopback port with a fresh
data directory, and gives tests TLS-configured paho clients and a raw MQTT socket."""
import os, socket, ssl, struct, subprocess, sys, tempfile, time, threading, queue, shutil
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

KIZUNA = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "kizuna"
# ../shared: test data by path (its licences in data/MANIFEST.md)
SHARED = os.environ.get("KZ_SHARED_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared"))
# python3-requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's verify: the
# node's CA must win, in every test that imports this
for _v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(_v, None)


def tmpdir(prefix):
    """A fresh temporary directory, removed when the test process exits."""
    import atexit
    d = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, d, True)
    return d


_ports_given = set()
_ports_block = [0, 0]  # the next port of this process's block, and the block's end


def free_port():
    """A loopback port free now and not handed out before in this process. Ports come from a
    block of 100 reserved for this process by scripts/free-port-base, below the kernel's
    ephemeral ports: a port of the ephemeral range handed out but not yet listened on (a
    nats-server started after the node that got its port) can be taken meanwhile by any
    outgoing connection or by another test's bind to port 0 (ctest -j), and a port was once
    given twice (a CI run of cluster_taxii_labels)."""
    while True:
        if _ports_block[0] >= _ports_block[1]:
            tool = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "free-port-base")
            base = int(subprocess.run([tool, "100"], capture_output=True, text=True, check=True).stdout)
            _ports_block[:] = [base, base + 100]
        p = _ports_block[0]
        _ports_block[0] += 1
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        if p not in _ports_given:
            _ports_given.add(p)
            return p


def wait_serving(proc, port, logtext, timeout=20):
    """Waits until `kizuna serve` (proc) accepts connections on 127.0.0.1:port; raises with
    the end of its log (logtext()) if it exits first or the timeout passes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("kizuna serve exited: " + logtext()[-4000:])
            time.sleep(0.05)
    raise RuntimeError("kizuna serve did not accept connections within %d s" % timeout)


class Node:
    instances = []

    def __init__(self, config=""):
        Node.instances.append(self)
        self.dir = tempfile.mkdtemp(prefix="kz-it-")
        self.port = free_port()
        self.cfg = os.path.join(self.dir, "kizuna.conf")
        with open(self.cfg, "w") as f:
            # tests without a policy of their own run the node open (policy.open: every
            # authenticated identity may do everything); the default is deny (test_zero_trust)
            opened = "" if "policy.file" in config or "policy.open" in config else "policy.open = 1\n"
            f.write("mqtt.listen = 127.0.0.1:%d\nhttps.listen = 127.0.0.1:0\nthreads = 2\ntick_ms = 50\n%s%s\n" % (self.port, opened, config))
        self.data = os.path.join(self.dir, "var")
        self.log = open(os.path.join(self.dir, "serve.log"), "w+")
        self.pki = os.path.join(self.data, "pki")
        import atexit
        atexit.register(self.shutdown)  # before the start: a node that fails to start leaves no directory
        self.start()

    def start(self):
        """Starts `kizuna serve` on this node's config and data (again, after a kill) and
        waits until it accepts connections."""
        self.proc = subprocess.Popen([KIZUNA, "serve", "--config", self.cfg, "--data", self.data],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_serving(self.proc, self.port, self.logtext)

    def shutdown(self):
        if getattr(self, "proc", None) and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.cleanup()

    def logtext(self):
        if not self.log.closed:
            self.log.flush()
        try:
            with open(self.log.name) as f:
                return f.read()
        except FileNotFoundError:  # cleaned up: what it said before
            return getattr(self, "saved_log", "")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            rc = self.proc.wait(20)
        else:
            rc = self.proc.returncode
        self.log.close()
        return rc

    def cleanup(self):
        try:
            self.saved_log = self.logtext()
        except OSError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def issue(self, name, spiffe=None, days=1, ca=None, extra=""):
        """Issues a client certificate with openssl (a real outside tool)."""
        ca = ca or self.pki
        spiffe = spiffe or "spiffe://kizuna.local/dev/user/%s" % name
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        crt = os.path.join(self.dir, name + ".pem")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
            if spiffe:
                f.write("subjectAltName=URI:%s\n" % spiffe)
            f.write(extra)
        run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key])
        run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=" + name, "-out", csr])
        args = ["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(ca, "ca.pem"),
                "-CAkey", os.path.join(ca, "ca.key"), "-CAcreateserial", "-out", crt, "-extfile", ext]
        if days < 0:  # an expired certificate: backdated validity via openssl ca is heavy; use -days 0 and faketime-free trick
            args += ["-days", "1", "-not_before", "20200101000000Z", "-not_after", "20200102000000Z"]
        else:
            args += ["-days", str(days)]
        run(args)
        return crt, key

    def https_port(self):
        """The HTTPS listener's port, from the node's log (the line can follow the MQTT port's
        opening by a moment)."""
        import re
        deadline = time.time() + 20
        while True:
            found = re.findall(r"HTTPS on 127\.0\.0\.1:(\d+)", self.logtext())
            if found or time.time() > deadline:
                return int(found[-1])
            time.sleep(0.05)

    def client(self, cid="", v5=True, cert=None, clean=True, **kw):
        c = Client(self, cid, v5, cert, clean, **kw)
        return c

    def raw(self, cert=None):
        return Raw(self, cert)


def run(args):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode:
        raise RuntimeError("%s failed: %s" % (args[0], r.stderr.decode()))
    return r


def stacks(node):
    """A node that does not answer: its threads' stacks (with gdb, when installed) and its
    log's tail, for the test's output."""
    import shutil
    print("--- no CONNACK in time from the node on port %d; its log's tail:\n%s" % (node.port, node.logtext()[-3000:]))
    if shutil.which("gdb") and node.proc.poll() is None:
        r = subprocess.run(["gdb", "-batch", "-p", str(node.proc.pid), "-ex", "thread apply all bt"],
                           capture_output=True, text=True, timeout=120)
        print("--- its threads:\n" + r.stdout[-20000:])


class Client:
    """A paho client with a message queue."""

    def __init__(self, node, cid, v5, cert, clean, keepalive=60, props=None, will=None, ws=False, connack_s=10):
        """ws: MQTT over WebSocket, to the HTTPS listener's /mqtt."""
        self.v5 = v5
        self.c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                             clean_session=None if v5 else clean, transport="websockets" if ws else "tcp")
        port = node.port
        if ws:
            self.c.ws_set_options(path="/mqtt")
            port = node.https_port()
        crt, key = cert or (os.path.join(node.pki, "admin.pem"), os.path.join(node.pki, "admin.key"))
        self.c.tls_set(ca_certs=os.path.join(node.pki, "ca.pem"), certfile=crt, keyfile=key)
        self.msgs = queue.Queue()
        self.connack = queue.Queue()
        self.disc = queue.Queue()
        self.acks = queue.Queue()
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        self.c.on_publish = lambda c, u, mid: self.acks.put(mid)
        if v5:
            self.c.on_connect = lambda c, u, f, rc, p=None: self.connack.put((f, rc, p))
            self.c.on_disconnect = lambda c, u, rc, p=None: self.disc.put(rc)
            self.c.on_subscribe = lambda c, u, mid, rcs, p=None: self.acks.put(("sub", mid, rcs, p))
        else:
            self.c.on_connect = lambda c, u, f, rc: self.connack.put((f, rc, None))
            self.c.on_disconnect = lambda c, u, rc: self.disc.put(rc)
            self.c.on_subscribe = lambda c, u, mid, q: self.acks.put(("sub", mid, q, None))
        if will:
            self.c.will_set(*will[:4], properties=will[4] if len(will) > 4 else None)
        if v5:
            self.c.connect("localhost", port, keepalive, clean_start=clean, properties=props)
        else:
            self.c.connect("localhost", port, keepalive)
        self.c.loop_start()
        try:
            self.flags, self.rc, self.props = self.connack.get(timeout=connack_s)
        except queue.Empty:
            stacks(node)
            raise

    def sub(self, topic, qos=0, **kw):
        if self.v5:
            from paho.mqtt.subscribeoptions import SubscribeOptions
            opts = SubscribeOptions(qos=qos, noLocal=kw.get("no_local", False),
                                    retainAsPublished=kw.get("rap", False),
                                    retainHandling=kw.get("rh", 0))
            self.c.subscribe(topic, options=opts, properties=kw.get("props"))
        else:
            self.c.subscribe(topic, qos)
        kind, mid, rcs, self.suback_props = self.acks.get(timeout=10)
        return rcs

    def pub(self, topic, payload, qos=0, retain=False, props=None):
        info = self.c.publish(topic, payload, qos, retain, properties=props)
        if qos:
            info.wait_for_publish(10)
        return info

    def get(self, timeout=5):
        return self.msgs.get(timeout=timeout)

    def none(self, wait=0.5):
        try:
            m = self.msgs.get(timeout=wait)
            raise AssertionError("unexpected message on %s: %r" % (m.topic, m.payload))
        except queue.Empty:
            pass

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()

    def kill(self):
        """Drops the network connection without DISCONNECT."""
        sock = self.c.socket()
        self.c.loop_stop()  # first, so that paho does not reconnect
        sock.shutdown(socket.SHUT_RDWR)


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def s16(b):
    return struct.pack("!H", len(b)) + b


class Raw:
    """A TLS socket speaking hand-built MQTT, for malformed and edge-case input."""

    def __init__(self, node, cert=None):
        ctx = ssl.create_default_context(cafile=os.path.join(node.pki, "ca.pem"))
        crt, key = cert or (os.path.join(node.pki, "admin.pem"), os.path.join(node.pki, "admin.key"))
        ctx.load_cert_chain(crt, key)
        self.s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", node.port), 5),
                                 server_hostname="localhost")
        self.s.settimeout(10)
        self.buf = b""

    def send(self, b):
        self.s.sendall(b)

    def connect(self, cid=b"raw", v5=True, keepalive=60, props=b"", clean=True, will=None):
        """will: (topic, payload, will properties) sent at QoS 0."""
        flags = (2 if clean else 0) | (4 if will else 0)
        body = s16(b"MQTT") + bytes([5 if v5 else 4, flags]) + struct.pack("!H", keepalive)
        if v5:
            body += varint(len(props)) + props
        body += s16(cid)
        if will:
            if v5:
                body += varint(len(will[2])) + will[2]
            body += s16(will[0]) + s16(will[1])
        self.send(bytes([0x10]) + varint(len(body)) + body)
        return self.packet()

    def packet(self):
        """Returns (type, flags, body) or None at EOF."""
        while True:
            if len(self.buf) >= 2:
                n, mult, i = 0, 1, 1
                while i < len(self.buf) and i < 5:
                    n += (self.buf[i] & 0x7F) * mult
                    mult *= 128
                    if not self.buf[i] & 0x80:
                        break
                    i += 1
                if i < len(self.buf) and len(self.buf) >= i + 1 + n:
                    p = self.buf[:i + 1 + n]
                    self.buf = self.buf[i + 1 + n:]
                    return (p[0] >> 4, p[0] & 15, p[i + 1:])
            try:
                d = self.s.recv(65536)
            except (ConnectionError, ssl.SSLError, OSError):
                d = b""
            if not d:
                return None
            self.buf += d

    def closed(self):
        while True:
            p = self.packet()
            if p is None:
                return True


def collect(c, n, timeout=20):
    """The payloads (text) of up to n messages client c receives within timeout."""
    out = []
    deadline = time.time() + timeout
    while len(out) < n and time.time() < deadline:
        try:
            out.append(c.get(timeout=max(0.1, deadline - time.time())).payload.decode())
        except queue.Empty:
            break
    return out


def until(fn, timeout=15, step=0.05):
    """fn()'s first true value within timeout seconds (polled every step), else AssertionError."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("not within %d s" % timeout)


def run_tests(tests):
    failed = 0
    for t in tests:
        start = time.time()
        try:
            t()
            print("PASS %s (%.1fs)" % (t.__name__, time.time() - start))
        except Exception as e:
            failed += 1
            import traceback
            traceback.print_exc()
            print("FAIL %s: %s" % (t.__name__, e))
            for n in Node.instances:  # what the node said, for the diagnosis
                print("--- node log (last 3000 bytes):\n" + n.logtext()[-3000:])
    print("%d passed, %d failed" % (len(tests) - failed, failed))
    sys.exit(1 if failed else 0)
