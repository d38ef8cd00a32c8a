#!/usr/bin/python3
"""Input backpressure against a real node: a client that floods QoS 1 publishes and never
reads its PUBACKs must be stopped (the node stops reading it once its answers back up),
while the node stays small and keeps serving everyone else."""
import os, socket, ssl, struct, subprocess, time
from kzharness import *

# Under AddressSanitizer freed memory sits in a quarantine (256 MiB by default) and would
# count as growth; keep it small so that RSS still means what the node holds.
os.environ["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4").lstrip(":")
# backpressure on its own: the per-identity publish limits (test_zero_trust) are off here
NOLIMIT = "limits.identity = default publish_rate=0 publish_bytes=0\n"
# freed memory given back within a second (memory.keep_free_bytes = 0): RSS is what the node holds
node = Node(NOLIMIT + "limits.max_write_backlog = 262144\nlimits.read_budget = 32768\nmemory.keep_free_bytes = 0")
LIMIT = 150 << 20  # bytes: far more than the node's 256 KiB output cap plus socket buffers


def rss_kb():
    for line in open("/proc/%d/status" % node.proc.pid):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


def test_flooder_is_paused_and_others_served():
    r = node.raw()
    assert r.connect(b"flooder", v5=False)[0] == 2
    # 8,192 QoS 1 publishes of an empty payload on topic "f", packet ids 1..8192, 3.1.1.
    chunk = b"".join(bytes([0x32, 5]) + s16(b"f") + struct.pack("!H", i) for i in range(1, 8193))
    r.s.settimeout(3)
    sent, blocked = 0, False
    start = rss_kb()
    while sent < LIMIT:
        try:
            r.s.sendall(chunk)
            sent += len(chunk)
        except (socket.timeout, ssl.SSLWantWriteError):
            blocked = True
            break
    assert blocked, "node kept reading %d MiB from a client that reads nothing" % (sent >> 20)
    # Paused, not dead: another client still gets through, and memory stayed bounded.
    a, b = node.client("bp-sub"), node.client("bp-pub")
    a.sub("bp/t", 1)
    b.pub("bp/t", b"still here", 1)
    assert a.get().payload == b"still here"
    grown = rss_kb() - start
    assert grown < 64 << 10, "RSS grew by %d kB while the flooder was paused" % grown
    # Once the flooder reads its acknowledgements, the node reads it again.
    r.s.settimeout(10)
    acks = 0
    while acks < 1000:
        p = r.packet()
        assert p is not None and p[0] == 4, p
        acks += 1
    a.close(), b.close()
    print("paused after %.1f MiB sent; RSS grew %d kB" % (sent / 1048576, grown))


def test_qos0_flood_waits_for_the_store():
    """QoS 0 has no acknowledgement to hold back on: with the store's backlog over
    limits.max_store_backlog the node stops reading the publisher until the store catches
    up. Every message still ends up in the log, and everyone else is still served."""
    n2 = Node(NOLIMIT + "limits.max_store_backlog = 4096\nlog_level = debug")
    r = n2.raw()
    assert r.connect(b"flood0", v5=False)[0] == 2
    payload = b"x" * 100
    pkt = bytes([0x30, 2 + 2 + len(payload)]) + s16(b"f0") + payload
    total = 50000
    r.s.settimeout(30)
    for i in range(0, total, 1000):
        r.s.sendall(pkt * 1000)
    r.send(bytes([0xE0, 0]))  # DISCONNECT
    a, b = n2.client("q0-sub"), n2.client("q0-pub")
    a.sub("q0/t", 1)
    b.pub("q0/t", b"served", 1)
    assert a.get().payload == b"served"
    a.close(), b.close()
    deadline = time.time() + 20
    while time.time() < deadline:
        out = subprocess.run([KIZUNA, "store", "verify", "--data", n2.data], stdout=subprocess.PIPE).stdout.decode()
        if (": %d records" % (total + 1)) in out:
            break
        time.sleep(0.2)
    assert (": %d records" % (total + 1)) in out, out
    assert "pausing publishers" in n2.logtext(), "the backlog cap never engaged"


run_tests([test_flooder_is_paused_and_others_served, test_qos0_flood_waits_for_the_store])
