#!/usr/bin/python3
"""SSE fan-out (issue 20, BENCHMARKS.md "Entities"): one node, N streams on
/api/v1/stream/entities (raw TLS sockets, events counted as they come), a paho publisher
sending U updates of E entities (QoS 1, 100 in flight). Prints: updates/s accepted, events
delivered over all streams and per stream, the time from the last acknowledgement until
every stream has the last update of every entity, and the node's CPU time per update.
Usage: bench/entity-fanout.py [KIZUNA] [streams] [entities] [updates]"""
import json, os, socket, ssl, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
KZ = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build", "src", "cli", "kizuna")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100
E = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
U = int(sys.argv[4]) if len(sys.argv) > 4 else 50000
sys.argv = [sys.argv[0], KZ]
from kzharness import Node, free_port  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

HPORT = free_port()
node = Node("https.listen = 127.0.0.1:%d\nentity.max_streams = %d\nlimits.identity = default connections=0 "
            "publish_rate=0 publish_bytes=0 https_rate=0\nlog_level = warn\n" % (HPORT, N + 10))
pki = node.pki


class Stream(threading.Thread):
    """Counts events and remembers the newest counter seen per entity."""

    def __init__(self):
        super().__init__(daemon=True)
        ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
        ctx.load_cert_chain(os.path.join(pki, "admin.pem"), os.path.join(pki, "admin.key"))
        self.s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", HPORT)), server_hostname="localhost")
        self.s.sendall(b"GET /api/v1/stream/entities HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        self.events, self.newest, self.synced = 0, {}, False

    def run(self):
        buf = b""
        while True:
            try:
                d = self.s.recv(1 << 16)
            except OSError:
                return
            if not d:
                return
            buf += d
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                if b"event: synced" in ev:
                    self.synced = True
                i = ev.find(b'{"id":"')
                if i < 0:
                    continue
                self.events += 1
                j = ev.find(b'"', i + 7)
                k = ev.find(b'"n":', j)
                if k > 0:
                    self.newest[ev[i + 7:j]] = int(ev[k + 4:ev.find(b"}", k)])


def cpu_s(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


streams = [Stream() for _ in range(N)]
for s in streams:
    s.start()
while not all(s.synced for s in streams):
    time.sleep(0.05)
pub = mqtt.Client(client_id="fanout-pub", protocol=mqtt.MQTTv5)
pub.tls_set(ca_certs=os.path.join(pki, "ca.pem"), certfile=os.path.join(pki, "admin.pem"),
            keyfile=os.path.join(pki, "admin.key"))
pub.max_inflight_messages_set(100)
pub.max_queued_messages_set(0)
pub.connect("localhost", node.port, 30)
pub.loop_start()
cpu0, t0 = cpu_s(node.proc.pid), time.time()
infos = []
for i in range(U):
    eid = "e%d" % (i % E)
    body = {"id": eid, "position": {"lat": (i % 90), "lon": (i % 180)}, "attributes": {"n": i}}
    infos.append(pub.publish("kz/entity/" + eid, json.dumps(body, separators=(",", ":")).encode(), 1))
for info in infos:
    info.wait_for_publish(120)
t_acked = time.time()
last = {("e%d" % (i % E)).encode(): i for i in range(U - E, U)}
while any(any(s.newest.get(k) != v for k, v in last.items()) for s in streams) and time.time() < t_acked + 120:
    time.sleep(0.02)
t_all = time.time()
cpu = cpu_s(node.proc.pid) - cpu0
events = sum(s.events for s in streams)
print("streams %d, entities %d, updates %d" % (N, E, U))
print("updates acknowledged: %.0f/s (paho, QoS 1, 100 in flight)" % (U / (t_acked - t0)))
print("events delivered: %d over all streams (%.0f per stream, %.0f/s)" % (events, events / N, events / (t_all - t0)))
print("every stream had every entity's last update %.2f s after the last acknowledgement" % (t_all - t_acked))
print("node CPU: %.1f s, %.1f us per update" % (cpu, cpu / U * 1e6))
node.shutdown()
