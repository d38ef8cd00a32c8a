#!/usr/bin/python3
"""TAK fan-out (issue 21, BENCHMARKS.md "Adapters"): one node with its TAK endpoint, N TAK
clients (raw TLS sockets, one thread each, CoT events counted as they come), and a paho
publisher that moves E entities once a second for D seconds (QoS 1). Prints the CoT events
delivered per second over all clients, and the node's CPU over the window: cores used and
microseconds per delivered event. The clients and the publisher share the machine with the
node. Usage: bench/tak-fanout.py [KIZUNA] [clients] [entities] [seconds]"""
import json, os, socket, ssl, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
KZ = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build", "src", "cli", "kizuna")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100
E = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
D = int(sys.argv[4]) if len(sys.argv) > 4 else 20
sys.argv = [sys.argv[0], KZ]
from kzharness import Node, free_port  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

TPORT = free_port()
node = Node("tak.listen = 127.0.0.1:%d\ntak.max_connections = %d\ntak.push_interval_ms = 1000\n"
            "limits.identity = default connections=0 publish_rate=0 publish_bytes=0 https_rate=0\nlog_level = warn\n"
            % (TPORT, N + 10))
pki = node.pki


class Client(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
        ctx.load_cert_chain(os.path.join(pki, "admin.pem"), os.path.join(pki, "admin.key"))
        self.s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", TPORT)), server_hostname="localhost")
        self.events = 0

    def run(self):
        tail = b""
        while True:
            try:
                d = self.s.recv(1 << 18)
            except OSError:
                return
            if not d:
                return
            d = tail + d
            self.events += d.count(b"</event>")
            tail = d[-8:]
            if tail.endswith(b"</event>"):
                tail = b""


def cpu_ticks(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


pub = mqtt.Client(client_id="mover", protocol=mqtt.MQTTv5)
pub.tls_set(ca_certs=os.path.join(pki, "ca.pem"), certfile=os.path.join(pki, "admin.pem"),
            keyfile=os.path.join(pki, "admin.key"))
pub.max_inflight_messages_set(100)
pub.connect("localhost", node.port)
pub.loop_start()


def move(second):
    infos = []
    for i in range(E):
        body = {"id": "trk-%d" % i, "type": "a-h-A", "name": "T%d" % i,
                "position": {"lat": 30 + i * 0.001, "lon": 130 + second * 0.001}, "motion": {"course": 90, "speed": 200}}
        infos.append(pub.publish("kz/entity/trk-%d" % i, json.dumps(body), 1))
    for inf in infos:
        inf.wait_for_publish(30)


move(0)  # the picture
clients = [Client() for _ in range(N)]
for c in clients:
    c.start()
time.sleep(3)  # the snapshots
base = sum(c.events for c in clients)
hz = os.sysconf("SC_CLK_TCK")
t0, c0 = time.time(), cpu_ticks(node.proc.pid)
for s in range(1, D + 1):
    start = time.time()
    move(s)
    time.sleep(max(0, 1 - (time.time() - start)))
time.sleep(1.5)  # the last push
t1, c1 = time.time(), cpu_ticks(node.proc.pid)
events = sum(c.events for c in clients) - base
cpu = (c1 - c0) / hz
print("tak fan-out: %d clients, %d entities moving once a second for %d s" % (N, E, D))
print("  CoT events delivered: %d (%.0f/s over all clients, %.0f per client per second; %d expected per client)"
      % (events, events / (t1 - t0), events / (t1 - t0) / N, E * D))
print("  node CPU: %.2f s in %.1f s = %.2f cores; %.2f us per delivered event" % (cpu, t1 - t0, cpu / (t1 - t0),
                                                                                 cpu * 1e6 / max(events, 1)))
pub.loop_stop()
node.shutdown()
