#!/usr/bin/python3
"""Acknowledged means on disk: QoS 1 publishers against a real node that is killed with
SIGKILL at random moments. After each kill the node restarts on the same data directory and
every message whose PUBACK a publisher received must be in the record log exactly once.
CYCLES (default 10) kill/restart cycles; scripts/soak-crash runs many more."""
import json, os, random, signal, subprocess, threading, time
from kzharness import *

CYCLES = int(os.environ.get("CYCLES", "10"))
node = Node("store.fsync = always")


def publisher(name, acked, stop):
    """Publishes QoS 1 until stop or the connection dies; records acknowledged payloads."""
    sent = {}
    c = mqtt.Client(client_id=name, protocol=mqtt.MQTTv311)
    c.tls_set(ca_certs=os.path.join(node.pki, "ca.pem"), certfile=os.path.join(node.pki, "admin.pem"),
              keyfile=os.path.join(node.pki, "admin.key"))
    c.max_inflight_messages_set(20)
    c.on_publish = lambda cl, u, mid: acked.append(sent.get(mid))
    try:
        c.connect("localhost", node.port, 30)
    except OSError:
        return
    c.loop_start()
    i = 0
    while not stop.is_set():
        payload = ("%s-%d" % (name, i)).encode()
        info = c.publish("dur/%s" % name, payload, 1)
        if info.rc != 0:
            break
        sent[info.mid] = payload
        i += 1
        if i % 20 == 0:
            time.sleep(0.001)
    c.loop_stop()


def dump():
    r = subprocess.run([KIZUNA, "store", "dump", "--data", node.data], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    counts = {}
    for line in r.stdout.decode().splitlines():
        p = json.loads(line)["payload"].encode()
        counts[p] = counts.get(p, 0) + 1
    return counts


def test_kill9_loses_no_acknowledged_message():
    total = 0
    for cycle in range(CYCLES):
        acked, stop = [], threading.Event()
        names = ["c%d-p%d" % (cycle, k) for k in range(3)]
        threads = [threading.Thread(target=publisher, args=(n, acked, stop)) for n in names]
        for t in threads:
            t.start()
        time.sleep(random.uniform(0.2, 1.0))
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait()
        stop.set()
        for t in threads:
            t.join(10)
        node.start()
        counts = dump()
        acked = [a for a in acked if a is not None]
        missing = [a for a in acked if counts.get(a, 0) == 0]
        doubled = [a for a in acked if counts.get(a, 0) > 1]
        assert not missing, "cycle %d: %d acknowledged messages missing, e.g. %r" % (cycle, len(missing), missing[:3])
        assert not doubled, "cycle %d: stored twice: %r" % (cycle, doubled[:3])
        total += len(acked)
    assert total > 0
    print("%d cycles, %d acknowledged messages, all present exactly once" % (CYCLES, total))


run_tests([test_kill9_loses_no_acknowledged_message])
