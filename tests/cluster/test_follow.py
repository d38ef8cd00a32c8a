#!/usr/bin/python3
"""Every node delivers everything (docs/CLUSTER.md "The path of a delivery on another node",
issue 19 item 3): two nodes on one nats-server; what a publisher sends to node A reaches the
subscribers of node B, in order and once, under B's decision point; A's own subscribers get it
once (A does not follow its own records back); a retained message on A is B's retained message
too; B, restarted, does not take the same records twice."""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *

a = cluster_node("n1")
nats = Nats(a.pki, os.path.join(a.dir, "js"))
b = cluster_node("n2", pki_from=a)
wait_log(a, "JetStream answers")
wait_log(b, "JetStream answers")


def test_publish_on_a_reaches_subscribers_on_b():
    sb = b.client("follow-sub-b")
    sb.sub("sensors/#", qos=1)
    sa = a.client("follow-sub-a")
    sa.sub("sensors/#", qos=1)
    r = Raw(a)
    assert r.connect(b"follow-pub")[0] == 2
    for i in range(1, 101):
        publish(r, b"sensors/x", b"m-%d" % i, i)
    assert all(puback(r)[1] == 0 for _ in range(100))
    want = ["m-%d" % i for i in range(1, 101)]
    got_b = collect(sb, 100)
    assert got_b == want, "B got %d, first %r" % (len(got_b), got_b[:3])
    got_a = collect(sa, 100)
    assert got_a == want, "A got %d" % len(got_a)
    sa.none(1.0)  # no second copy of A's own records
    sb.none(0.5)
    assert metrics(b)["kizuna_cluster_followed_total"] == 100, metrics(b)
    sa.close()
    sb.close()


def test_retained_on_a_is_retained_on_b():
    r = Raw(a)
    assert r.connect(b"follow-ret")[0] == 2
    body = s16(b"state/door") + struct.pack("!H", 1) + varint(0) + b"open"
    r.send(bytes([0x33]) + varint(len(body)) + body)  # QoS 1, retain
    assert puback(r)[1] == 0
    deadline = time.time() + 10
    got = None
    while time.time() < deadline and got is None:
        c = b.client("follow-ret-b")
        c.sub("state/#", qos=1)
        try:
            got = c.get(timeout=1)
        except queue.Empty:
            pass
        c.close()
    assert got is not None and got.payload == b"open" and got.retain, got


def test_restarted_follower_takes_nothing_twice():
    rc = b.stop()
    assert rc == 0, "rc %s: %s" % (rc, b.logtext()[-1500:])
    b.log = open(b.log.name, "a")
    b.start()
    wait_log(b, "JetStream answers")
    time.sleep(1.5)
    # B's log has A's 100 + 1 records once: a replay from the start shows each once
    p = Properties(PacketTypes.SUBSCRIBE)
    p.UserProperty = ("kz-replay-since", "1970-01-01T00:00:00Z")
    c = b.client("follow-replay")
    c.sub("sensors/#", qos=1, props=p)
    got = collect(c, 100, timeout=10)
    assert got == ["m-%d" % i for i in range(1, 101)], "replay on B: %d records" % len(got)
    c.none(1.0)  # and no second copy after them
    c.close()


def test_nats_restart_follows_from_the_floor():
    """B's consumer lives in memory on the nats-server (docs/CLUSTER.md "Our consumer"): the
    server restarted, it is gone, and B makes it again after what it had acknowledged, not from
    the stream's start (which would bring A's 101 records again, dropped as duplicates)."""
    sb = b.client("follow-floor-b")
    sb.sub("floor/#", qos=1)
    dup0 = metrics(b).get("kizuna_cluster_duplicates_total", 0)
    nats.kill()
    nats.start()
    deadline = time.time() + 30
    while time.time() < deadline:  # both back on JetStream
        ma, mb = metrics(a), metrics(b)
        if all(m.get("kizuna_cluster_connected") == 1 and m.get("kizuna_cluster_quorum") == 1 for m in (ma, mb)):
            break
        time.sleep(0.3)
    r = Raw(a)
    assert r.connect(b"follow-floor-pub")[0] == 2
    for i in range(1, 21):
        publish(r, b"floor/x", b"f-%d" % i, i)
    codes = [puback(r)[1] for _ in range(20)]
    assert codes == [0] * 20, codes
    got = collect(sb, 20, timeout=40)
    assert got == ["f-%d" % i for i in range(1, 21)], "B got %r" % got
    sb.close()
    wait_log(b, "made again", timeout=5)
    assert "from the stream's start" not in b.logtext(), b.logtext()[-2000:]
    dups = metrics(b).get("kizuna_cluster_duplicates_total", 0) - dup0
    assert dups < 50, "B took %d duplicates: its consumer started over from the stream's start" % dups


run_tests([test_publish_on_a_reaches_subscribers_on_b, test_retained_on_a_is_retained_on_b,
           test_restarted_follower_takes_nothing_twice, test_nats_restart_follows_from_the_floor])
nats.kill()
