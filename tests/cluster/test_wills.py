#!/usr/bin/python3
"""A node that dies (docs/CLUSTER.md "A node that died"): two nodes on one nats-server, with
cluster.node_dead_ms = 3000 and cluster.session_tombstone_ms = 2000.
- A client with a will is connected to A; A is killed with SIGKILL. B takes A's sessions and
  publishes the will to B's subscriber, once. The session then lives on B: its client reconnects
  there with session present. A restarted with its sessions.db gives the session up and does
  not publish the will again.
- A client whose node died and that reconnects to another node before the node is taken as
  dead keeps its session, and its will is not published (as a will delayed that long).
- A session that ended leaves a tombstone, purged after cluster.session_tombstone_ms."""
import os, signal, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

EXTRA = "cluster.node_dead_ms = 3000\ncluster.session_tombstone_ms = 2000\n"
a, b, nats = two_nodes(EXTRA)




def kill(n):
    n.proc.send_signal(signal.SIGKILL)
    n.proc.wait()


def test_dead_nodes_will_published_once_by_another():
    watcher = b.client("will-watcher")
    assert watcher.sub("wills/#", qos=1)[0].value == 1
    w = a.client("dies-with-a", clean=False, props=expiry(600), will=("wills/dies-with-a", b"gone", 1, False))
    assert w.sub("after/#", qos=1)[0].value == 1
    time.sleep(1.5)  # its entry reaches B
    t0 = time.time()
    kill(a)
    w.c.loop_stop()
    msg = watcher.get(timeout=20)
    took = time.time() - t0
    assert msg.topic == "wills/dies-with-a" and msg.payload == b"gone", (msg.topic, msg.payload)
    print("  the will came from B %.1f s after A was killed (cluster.node_dead_ms = 3000)" % took)
    assert "session of dead node n1 taken here" in b.logtext(), b.logtext()[-3000:]
    m = metrics(b)
    assert m["kizuna_cluster_nodes_dead"] == 1 and m["kizuna_cluster_sessions_adopted_total"] >= 1, m
    # the session lives on B now: its client comes back there, its subscription in force
    p = b.client("after-pub")
    p.pub("after/x", "while-away", qos=1)
    p.close()
    c = b.client("dies-with-a", clean=False, props=expiry(600))
    assert c.flags["session present"], "the session of the dead node is not on B"
    assert "while-away" in drain(c)
    c.close()
    # A comes back with its sessions.db (the session at its old epoch, its will held until A
    # has read the bucket): it gives the session up, and the will does not come again
    a.log = open(a.log.name, "a")
    a.start()
    wait_log(a, "sharing sessions")
    extra = drain(watcher, wait=4)
    assert not extra, "the will came again after A restarted: %r" % extra
    watcher.close()
    wait_log(b, "node n1 is back", timeout=10)
    assert metrics(b)["kizuna_cluster_nodes_dead"] == 0


def test_client_back_first_keeps_its_session_and_no_will():
    watcher = b.client("will-watcher-2")
    watcher.sub("wills2/#", qos=1)
    w = a.client("back-first", clean=False, props=expiry(600), will=("wills2/back-first", b"gone", 1, False))
    w.sub("bf/#", qos=1)
    time.sleep(1.5)
    kill(a)
    w.c.loop_stop()
    c = b.client("back-first", clean=False, props=expiry(600))  # well within 3 s
    assert c.flags["session present"]
    got = drain(watcher, wait=6)  # past cluster.node_dead_ms
    assert not got, "a will was published for a client that came back first: %r" % got
    c.close()
    watcher.close()
    a.log = open(a.log.name, "a")
    a.start()
    wait_log(a, "sharing sessions")


def test_tombstone_purged():
    before = metrics(b).get("kizuna_cluster_session_tombstones_purged_total", 0)
    c = b.client("short-lived", clean=True)  # no session after it: its entry ends
    c.close()
    deadline = time.time() + 20
    m = metrics(b)
    while time.time() < deadline and m["kizuna_cluster_session_tombstones_purged_total"] <= before:
        time.sleep(0.5)
        m = metrics(b)
    assert m["kizuna_cluster_session_tombstones_purged_total"] > before, m
    # A, which saw the purge through the bucket, forgot the entry too
    deadline = time.time() + 10
    while time.time() < deadline and metrics(a)["kizuna_cluster_session_tombstones"] > 0:
        time.sleep(0.5)
    assert metrics(a)["kizuna_cluster_session_tombstones"] == 0, metrics(a)
    # the purge left a marker in the bucket's stream; it goes one period later (B purges
    # markers older than cluster.session_tombstone_ms), and the key's subject is empty
    import hashlib
    subj = "$KV.KZ_SESSIONS.s." + hashlib.sha256(b"short-lived").hexdigest()
    deadline = time.time() + 15
    while True:
        info = js_request(b, "$JS.API.STREAM.INFO.KV_KZ_SESSIONS", {"subjects_filter": subj})
        left = (info.get("state", {}).get("subjects") or {}).get(subj, 0)
        if not left or time.time() > deadline:
            break
        time.sleep(0.5)
    assert not left, "the purge marker of %s is still in KV_KZ_SESSIONS: %s" % (subj, info.get("state"))
    # the client id is as new: a session made again works
    c = a.client("short-lived", clean=False, props=expiry(60))
    assert not c.flags["session present"]
    c.close()


run_tests([test_dead_nodes_will_published_once_by_another, test_client_back_first_keeps_its_session_and_no_will,
           test_tombstone_purged])
nats.kill()
