#!/usr/bin/python3
"""cluster.on_quorum_loss = local (docs/CLUSTER.md): while JetStream does not answer, QoS 1 is
acknowledged once on this node's disk (an edge node cut off from the centre keeps working),
and the records reach the stream when JetStream answers again."""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *

n = cluster_node("edge1", extra="cluster.on_quorum_loss = local\ncluster.batch_records = 4\n")
nats = Nats(n.pki, os.path.join(n.dir, "js"))
wait_log(n, "JetStream answers")


def test_acknowledged_locally_then_replicated():
    r = Raw(n)
    assert r.connect(b"edge-pub")[0] == 2
    publish(r, b"sensors/e", b"before", 1)
    assert puback(r)[1] == 0
    assert wait_records(n, 1)[0] == 1
    nats.p.send_signal(signal.SIGSTOP)
    try:
        t0 = time.time()
        for i in range(2, 12):
            publish(r, b"sensors/e", b"cut-off-%d" % i, i)
        acks = [puback(r) for _ in range(10)]
        assert all(rc == 0 for _, rc, _ in acks), acks
        assert time.time() - t0 < 5, "acknowledged only after %.1f s" % (time.time() - t0)
    finally:
        nats.p.send_signal(signal.SIGCONT)
    got = wait_records(n, 11, 30)
    assert got and got[0] == 11 and got[2:4] == (0, 0), got
    r.send(bytes([0xE0, 0]))


def test_batches_hold_at_most_batch_records():
    """cluster.batch_records caps a batch: 40 records accepted while JetStream is gone go out
    in messages of at most 4 records (docs/CLUSTER.md "Batches")."""
    nats.kill()
    r = Raw(n)
    assert r.connect(b"edge-batch")[0] == 2
    publish_acked(r, b"sensors/e", b"batch-", 40)
    nats.start()
    got = wait_records(n, 51, 30)
    assert got and got[0] == 51 and got[2:4] == (0, 0), got
    assert got[4] <= 4 and got[1] >= 51 // 4, got
    r.send(bytes([0xE0, 0]))


run_tests([test_acknowledged_locally_then_replicated, test_batches_hold_at_most_batch_records])
nats.kill()
