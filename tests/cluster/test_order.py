#!/usr/bin/python3
"""Per-publisher order across a failover (issue 19 item 9, docs/CLUSTER.md "Order"): two
nodes on one nats-server, a subscriber on B. A publisher sends a burst of large QoS 1
messages on A (every one acknowledged: in JetStream), then moves to B with the same client
id, as a client does when its node dies, and publishes again. B is stopped (SIGSTOP) during
the burst and continued just before the publisher arrives, so that its follower has the whole
burst still to take from the stream. B must deliver the burst before what the publisher sent
on B: the CONNECT on B waits (cluster.failover_order_ms) until B has taken every record the
stream held when it came. (With cluster.failover_order_ms = 0 on B this test fails: B
delivers the new message first.)

With NATS gone a CONNECT is answered after cluster.failover_order_ms, counted."""
import os, signal, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *

a = cluster_node("n1")
nats = Nats(a.pki, os.path.join(a.dir, "js"))
# B waits up to 8 s (the default is 3 s): under the sanitizers, taking a burst of 37.5 MB
# from the stream once took B longer than 3 s, and a CONNECT answered at the cap may be
# overtaken by design (docs/CLUSTER.md "Order"); the order is what is tested here
FAILOVER_MS = 8000  # below limits.connect_timeout_ms (10 s)
b = cluster_node("n2", pki_from=a, extra="cluster.failover_order_ms = %d\n" % FAILOVER_MS)
wait_log(a, "JetStream answers")
wait_log(b, "JetStream answers")
wait_log(a, "sharing sessions")
wait_log(b, "sharing sessions")

BURST, SIZE = 150, 256 * 1024


def test_publisher_order_kept_across_a_move_to_another_node():
    s = b.client("ord-sub", clean=True)
    assert s.sub("ord/#", qos=1)[0].value == 1
    for rnd in range(3):
        b.proc.send_signal(signal.SIGSTOP)
        p = a.client("ord-pub")
        p.c.max_inflight_messages_set(BURST)
        infos = [p.c.publish("ord/t", ("%d-%d-" % (rnd, i)).encode() + b"x" * SIZE, qos=1) for i in range(BURST)]
        for info in infos:
            info.wait_for_publish(60)
            assert info.rc == 0 and info.is_published()
        p.close()  # every one acknowledged: JetStream has them
        b.proc.send_signal(signal.SIGCONT)
        t0 = time.time()
        q = b.client("ord-pub", connack_s=30)  # the same client id, now on B
        waited = time.time() - t0
        q.pub("ord/t", "%d-after" % rnd, qos=1)
        q.close()
        got = []
        while len(got) < BURST + 1:
            got.append("-".join(s.get(timeout=60).payload[:24].decode().split("-")[:2]))
        after = got.index("%d-after" % rnd)
        assert after == len(got) - 1, "round %d: B delivered what the publisher sent on B before %d of what it " \
            "sent on A (last deliveries %r)" % (rnd, len(got) - 1 - after, got[-5:])
        print("  round %d: %d messages on A then 1 on B, delivered in order on B; CONNACK on B after %.0f ms"
              % (rnd, BURST, waited * 1000))
    s.close()


def test_connect_answered_without_nats():
    """With JetStream gone a CONNECT still waits (the node may be about to reconnect and catch
    up), but at most cluster.failover_order_ms, and it is counted."""
    t0 = time.time()
    c = b.client("ord-idle")
    print("  CONNACK on an idle cluster after %.0f ms" % ((time.time() - t0) * 1000))
    c.close()
    nats.kill()
    wait_log(b, "disconnected from NATS")
    before = metrics(b)["kizuna_cluster_failover_order_expired_total"]
    t0 = time.time()
    c = b.client("ord-alone", connack_s=30)
    took = time.time() - t0
    assert c.rc == 0
    c.close()
    print("  CONNACK with NATS gone after %.0f ms (cluster.failover_order_ms = %d)" % (took * 1000, FAILOVER_MS))
    assert metrics(b)["kizuna_cluster_failover_order_expired_total"] == before + 1
    assert "has not taken every record of the stream within %d ms" % FAILOVER_MS in b.logtext()


run_tests([test_publisher_order_kept_across_a_move_to_another_node, test_connect_answered_without_nats])
nats.kill()
