#!/usr/bin/python3
"""Acknowledged means on disk: QoS 1 and QoS 2 publishers against a real node that is killed
with SIGKILL at random moments. After each kill the node restarts on the same data directory;
then every message whose acknowledgement a publisher received (PUBACK, or PUBREC/PUBCOMP for
QoS 2) must be in the record log exactly once, `kizuna store verify` must find nothing
corrupt, and the index must agree with the log.
CYCLES (default 50) kill/restart cycles; scripts/soak-crash runs 1,000."""
import json, os, random, signal, subprocess, threading, time
from kzharness import *

CYCLES = int(os.environ.get("CYCLES", "50"))
node = Node("store.fsync = always")


def publisher(name, qos, acked, stop):
    """Publishes at qos until stop or the connection dies; records acknowledged payloads."""
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
    try:
        while not stop.is_set():
            payload = ("%s-%d" % (name, i)).encode()
            info = c.publish("dur/%s" % name, payload, qos)
            if info.rc != 0:
                break
            sent[info.mid] = payload
            i += 1
            if i % 20 == 0:
                time.sleep(0.001)
    except OSError:
        pass  # the node was killed under us: that is the point
    c.loop_stop()


def dump(from_seq):
    """Payload -> count for the records from from_seq on, and the highest seq seen."""
    r = subprocess.run([KIZUNA, "store", "dump", "--data", node.data, "--from", str(from_seq)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    counts, top = {}, from_seq - 1
    for line in r.stdout.decode().splitlines():
        rec = json.loads(line)
        p = rec["payload"].encode()
        counts[p] = counts.get(p, 0) + 1
        top = max(top, rec["seq"])
    return counts, top


def run(*args):
    r = subprocess.run([KIZUNA] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def test_kill9_loses_no_acknowledged_message():
    total, next_seq = 0, 1
    for cycle in range(CYCLES):
        acked, stop = [], threading.Event()
        # Payloads are unique per cycle, so each cycle's records are checked from the first
        # sequence number after the previous cycle's.
        pubs = [("c%d-q%d-p%d" % (cycle, 1 + k % 2, k), 1 + k % 2) for k in range(4)]
        threads = [threading.Thread(target=publisher, args=(n, q, acked, stop)) for n, q in pubs]
        for t in threads:
            t.start()
        time.sleep(random.uniform(0.1, 0.7))
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait()
        stop.set()
        for t in threads:
            t.join(10)
        node.start()
        counts, top = dump(next_seq)
        acked = [a for a in acked if a is not None]
        missing = [a for a in acked if counts.get(a, 0) == 0]
        doubled = [p for p, n in counts.items() if n > 1]
        assert not missing, "cycle %d: %d acknowledged messages missing, e.g. %r" % (cycle, len(missing), missing[:3])
        assert not doubled, "cycle %d: stored twice: %r" % (cycle, doubled[:3])
        rc, out, err = run("store", "verify", "--data", node.data)
        assert rc == 0, "cycle %d: verify: %s %s" % (cycle, out, err)
        if cycle % 10 == 9 or cycle == CYCLES - 1:
            # the index caught up with the log at start: same records, none missing
            stored = int(out.split(": ")[1].split(" ")[0])
            rc, out, err = run("query", "--data", node.data, "--limit", "0", "--format", "ndjson")
            assert rc == 0, err
            assert out.count("\n") == stored, "cycle %d: index has %d records, log %d" % (cycle, out.count("\n"), stored)
        total += len(acked)
        next_seq = top + 1
    assert total > 0
    print("%d cycles, %d acknowledged messages (QoS 1 and 2), all present exactly once" % (CYCLES, total))


run_tests([test_kill9_loses_no_acknowledged_message])
