#!/usr/bin/python3
"""A node that dies with a bridged tail (docs/CLUSTER.md "The bridge", "A node that died with a
bridged tail"): 3 nats-servers (JetStream R3) and 3 nodes from scripts/cluster-up, the bridge
on (cluster.bridge_ms = 1000, the default) and a CONNECT allowed to wait through an election
and a consumer made again (cluster.failover_order_ms = 25000; JetStream's election takes up to
9 s, and a node whose consumer was on the killed server makes it again 2-5 s after that).
1. QoS 1 publishers (raw MQTT 5, one message in flight) on the two nodes X and Y whose
   machines do not lead KZ_RECORDS; subscribers on Y and on the third node L.
2. The nats-server leading KZ_RECORDS is killed (SIGKILL; its node L lives on). nats-server 2.9
   waits at least 4 s before the survivors elect: X and Y acknowledge through KZ_BRIDGE.
3. Once X has bridged records, X is killed (SIGKILL, not restarted) before KZ_RECORDS has a
   leader again: records its publisher was told are safe are on KZ_BRIDGE and X's disk only.
   X's publisher fails over to Y.
Asserted: another node published X's bridged tail to KZ_RECORDS for it
(kizuna_cluster_bridge_adoptions_total > 0); every acknowledged message of both publishers
reaches the subscribers on Y and L; each publisher's in order, X's across its failover;
`kizuna cluster status` on Y lists X's bridged records."""
import os, signal, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from threeup import Cluster, Publisher, check_delivered, free_base, stop_publishers
from kzharness import KIZUNA

CL = Cluster("kz-bridge-death-", free_base(46),
             {"KZ_NODE_CONF": "cluster.bridge_ms = 1000\ncluster.failover_order_ms = 25000\n"
                               "limits.connect_timeout_ms = 30000"})
pids = CL.pids


def test_a_node_that_dies_with_a_bridged_tail_loses_nothing():
    ld = CL.wait_apart(60)
    time.sleep(1.5)
    ld = CL.wait_apart(30)
    L = ld["KZ_RECORDS"]
    X, Y = [i for i in (1, 2, 3) if i != L]
    subs = {i: CL.subscriber(i, "dth") for i in (L, Y)}
    time.sleep(1.0)
    px, py = Publisher(CL, "px", X, "dth", 30), Publisher(CL, "py", Y, "dth", 30)
    pubs = [px, py]
    for p in pubs:
        p.start()
    time.sleep(3)
    os.kill(pids()[L - 1], signal.SIGKILL)  # the nats-server leading KZ_RECORDS
    t_kill = time.time()
    # X bridges once KZ_RECORDS has confirmed nothing for 1 s; killed 1.5 s after that, well
    # inside the election (at least 4 s)
    deadline = t_kill + 4
    while time.time() < deadline and not (CL.metric(X, "kizuna_cluster_bridged_total") or 0):
        time.sleep(0.1)
    bridged = CL.metric(X, "kizuna_cluster_bridged_total") or 0
    assert bridged > 0, "node %d bridged nothing within 4 s of the kill" % X
    time.sleep(1.5)
    acked_x = len(px.acked)
    os.kill(pids()[X + 2], signal.SIGKILL)
    print("  nats-server %d killed; node %d bridged, then was killed %.1f s after it with %d messages of px "
          "acknowledged; px fails over to node %d" % (L, X, time.time() - t_kill, acked_x, Y))
    px.node = Y
    time.sleep(12)
    CL.start_nats(L)
    time.sleep(5)
    stop_publishers(pubs, 30)
    for p in pubs:
        print("  %s: %d acknowledged, %d refused, %d connections lost" % (p.name, len(p.acked), p.refused, p.lost))
    assert len(px.acked) > acked_x, "px: nothing acknowledged on node %d after its failover" % Y

    lost, disorder, twice = check_delivered(pubs, subs, 90)
    adopted = {i: CL.metric(i, "kizuna_cluster_bridge_adoptions_total") for i in (L, Y)}
    print("  adoptions (node: count): %r" % adopted)
    assert not lost, "acknowledged and not delivered: %r" % lost
    assert not disorder, "out of order: %r" % disorder
    assert any(adopted.values()), "no node published node %d's bridged tail to KZ_RECORDS" % X
    print("  every acknowledged message on the subscribers of nodes %d and %d, in order; delivered twice: %r"
          % (L, Y, twice))
    # kizuna cluster status lists the dead node's bridged records
    st = subprocess.run([KIZUNA, "cluster", "status", "--config", os.path.join(CL.dir, "n%d" % Y, "kizuna.conf"),
                         "--data", os.path.join(CL.dir, "n%d" % Y)], capture_output=True, text=True, timeout=60)
    line = [l for l in st.stdout.splitlines() if l.startswith("bridged by n%d: up to its record " % X)]
    assert line, "kizuna cluster status on node %d does not list node %d's bridged records:\n%s" % (Y, X, st.stdout)
    print("  kizuna cluster status on node %d: %s" % (Y, line[0]))
    for c, _ in subs.values():
        c.loop_stop()
        c.disconnect()


CL.run(test_a_node_that_dies_with_a_bridged_tail_loses_nothing)
