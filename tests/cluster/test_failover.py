#!/usr/bin/python3
"""Clients fail over between the nodes of a cluster (issue 19 item 8, docs/CLUSTER.md
"Failing over"): `kizuna sub` and `kizuna pub` with -h A,B.
- sub with a persistent session on node A; A is killed (SIGKILL); sub reconnects to B, its
  session moves with it (docs/CLUSTER.md "Sessions"), and it receives everything published
  before and after the kill, on either node (duplicates allowed, counted).
- pub -h A,B with A down publishes through B (exit 0, every QoS 1 message acknowledged).
- a bad server list is a usage error (exit 2)."""
import os, signal, sys, threading
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *

a, b, nats = two_nodes()
HOSTS = "localhost:%d,localhost:%d" % (a.port, b.port)
TLS = ["--cafile", os.path.join(a.pki, "ca.pem"), "--cert", os.path.join(a.pki, "admin.pem"),
       "--key", os.path.join(a.pki, "admin.key")]


def kpub(topic, msg, n=1, hosts=HOSTS):
    return subprocess.run([KIZUNA, "pub", "-h", hosts, *TLS, "-q", "1", "-t", topic, "-m", msg, "-n", str(n)],
                          capture_output=True, text=True, timeout=60)


def test_sub_and_pub_fail_over_when_a_node_is_killed():
    sub = subprocess.Popen([KIZUNA, "sub", "-h", HOSTS, *TLS, "-q", "1", "-c", "-x", "600", "-i", "fo-sub",
                            "-t", "fo/#"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(sub.stdout), daemon=True)
    reader.start()
    time.sleep(1.5)  # connected to A, subscribed
    for i in range(10):
        r = kpub("fo/x", "before-%d" % i, hosts="localhost:%d" % a.port)
        assert r.returncode == 0, r.stderr
    time.sleep(1.5)  # delivered, acknowledged, and the session entry written
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    t0 = time.time()
    r = kpub("fo/x", "after", n=10)  # A is down: B takes them
    assert r.returncode == 0, "pub -h A,B with A down: rc %d %s" % (r.returncode, r.stderr)
    assert "trying localhost:%d" % b.port in r.stderr, r.stderr
    deadline = time.time() + 30
    while time.time() < deadline and [l.strip() for l in lines].count("after") < 10:
        time.sleep(0.2)
    sub.send_signal(signal.SIGINT)
    try:
        sub.wait(10)
    except subprocess.TimeoutExpired:
        sub.kill()
    reader.join(5)
    err = sub.stderr.read()
    got = [l.strip() for l in lines]
    want = ["before-%d" % i for i in range(10)] + ["after"] * 10
    assert sub.returncode == 0, "sub rc %s: %s" % (sub.returncode, err)
    assert "connected to localhost:%d" % b.port in err, err
    assert all(w in got for w in want[:10]) and got.count("after") >= 10, "sub got %r" % got
    print("  sub: %d messages for 20 published (%d delivered again after the move), all 10 published after "
          "the kill delivered %.1f s after it" % (len(got), len(got) - 20, time.time() - t0))


def test_bad_server_list_is_a_usage_error():
    r = kpub("fo/x", "m", hosts="localhost:99999,localhost:1")
    assert r.returncode == 2 and "bad -h" in r.stderr, (r.returncode, r.stderr)


run_tests([test_bad_server_list_is_a_usage_error, test_sub_and_pub_fail_over_when_a_node_is_killed])
nats.kill()
