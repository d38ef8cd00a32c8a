#!/usr/bin/python3
"""The bridge (docs/CLUSTER.md "The bridge"): 3 nats-servers (JetStream R3) and 3 nodes from
scripts/cluster-up.
1. KZ_BRIDGE exists and its leader is kept off KZ_RECORDS's server: after the test asks
   KZ_BRIDGE's leader to step down until both streams have the same leader, the nodes part
   them again (and say so in their log).
2. The machine that leads KZ_RECORDS dies: its nats-server and its node, SIGKILL. nats-server
   2.9 waits at least 4 s before the survivors elect a new leader; QoS 1 publishers on the two
   other nodes (raw MQTT 5, one message in flight) must be acknowledged meanwhile, through the
   bridge. Asserted: both nodes bridged (kizuna_cluster_bridged_total > 0); every acknowledged
   message reaches the subscribers on both surviving nodes, each publisher's in order.
   Reported: how long each publisher waited at most between two acknowledgements.
3. The machine comes back: every record of the two publishing nodes is in KZ_RECORDS, none
   missing (`kizuna cluster status --records`): the bridge never stands in for it."""
import os, re, signal, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from threeup import Cluster, Publisher, check_delivered, free_base, stop_publishers
from kzharness import KIZUNA
from clusterlib import nats_request

CL = Cluster("kz-bridge-", free_base(45), {"KZ_NODE_CONF": "cluster.bridge_ms = 1000"})  # the default, made explicit
D, BASE, PKI, PORT, logtext, pids = CL.dir, CL.base, CL.pki, CL.port, CL.logtext, CL.pids


def test_bridge_acknowledges_while_the_stream_elects_and_loses_nothing():
    # 1. kept apart
    CL.wait_apart(60)
    together = False
    for _ in range(30):
        ld = CL.leaders()
        if ld.get("KZ_RECORDS") == ld.get("KZ_BRIDGE") and "KZ_BRIDGE" in ld:
            together = True
            break
        if "KZ_BRIDGE" in ld:
            try:
                i = ld["KZ_BRIDGE"]
                nats_request(BASE + i - 1, os.path.join(PKI, "ca.pem"), os.path.join(D, "n%d" % i, "nodecert"),
                             "$JS.API.STREAM.LEADER.STEPDOWN.KZ_BRIDGE")
            except OSError:
                pass
        time.sleep(0.3)
    if together:
        ld = CL.wait_apart(30)
        assert any("asking KZ_BRIDGE's leader to step down" in logtext(i) for i in (1, 2, 3)), \
            "the leaders came apart, but no node said it asked"
        print("  KZ_BRIDGE put on KZ_RECORDS's server by the test; the nodes parted them: %r" % ld)
    else:
        print("  (the test's stepdowns never put KZ_BRIDGE on KZ_RECORDS's server; parting not exercised)")
    ld = CL.wait_apart(30)
    time.sleep(1.5)  # the nodes' own check, after the test's last stepdown
    ld = CL.wait_apart(30)

    # 2. the machine that leads KZ_RECORDS dies
    L = ld["KZ_RECORDS"]
    live = [i for i in (1, 2, 3) if i != L]
    subs = {i: CL.subscriber(i, "brg") for i in live}
    time.sleep(1.0)
    pubs = [Publisher(CL, "p%d" % i, i, "brg", 20) for i in live]
    for p in pubs:
        p.start()
    time.sleep(3)
    before = {p.name: len(p.acked) for p in pubs}
    os.kill(pids()[L - 1], signal.SIGKILL)  # its nats-server
    os.kill(pids()[L + 2], signal.SIGKILL)  # its node
    t_kill = time.time()
    time.sleep(12)
    stop_publishers(pubs, 30)
    for p in pubs:
        print("  %s (node %d): %d acknowledged, %d after the kill, %d refused, longest wait between two "
              "acknowledgements %.2f s" % (p.name, p.node, len(p.acked), len(p.acked) - before[p.name], p.refused,
                                           p.gap))
        assert len(p.acked) > before[p.name], "%s: nothing acknowledged after the kill" % p.name
    for i in live:
        m = {k: CL.metric(i, "kizuna_cluster_" + k) for k in ("bridged_total", "bridge_episodes_total")}
        print("  node %d: bridged %r records in %r episodes" % (i, m["bridged_total"], m["bridge_episodes_total"]))
        assert (m["bridged_total"] or 0) > 0, "node %d bridged nothing while KZ_RECORDS elected" % i

    # every acknowledged message on both surviving subscribers, each publisher's in order
    lost, disorder, twice = check_delivered(pubs, subs, 90)
    assert not lost, "acknowledged and not delivered: %r" % lost
    assert not disorder, "out of order: %r" % disorder
    print("  every acknowledged message on both surviving subscribers, in order; delivered twice: %r" % twice)
    for c, _ in subs.values():
        c.loop_stop()
        c.disconnect()

    # 3. the machine back: KZ_RECORDS has every record of the publishing nodes
    CL.start_nats(L)
    CL.start_node(L)
    for i in live:
        deadline = time.time() + 90
        r = None
        while time.time() < deadline:
            r = records(i)
            if r and r[3] == 0 and r[0] >= len(pubs[live.index(i)].acked):
                break
            time.sleep(1)
        assert r and r[3] == 0 and r[0] >= len(pubs[live.index(i)].acked), \
            "node %d: KZ_RECORDS holds %r (records, messages, twice, missing) for %d acknowledged" % (
                i, r, len(pubs[live.index(i)].acked))
        print("  node %d: KZ_RECORDS holds its %d records, none missing" % (i, r[0]))


def records(i):
    r = subprocess.run([KIZUNA, "cluster", "status", "--records", "--config", os.path.join(D, "n%d" % i, "kizuna.conf"),
                        "--data", os.path.join(D, "n%d" % i)], capture_output=True, text=True, timeout=60)
    m = re.search(r"this node's records stored: (\d+) in (\d+) messages, (\d+) more than once, (\d+) missing", r.stdout)
    return tuple(int(x) for x in m.groups()) if m else None


CL.run(test_bridge_acknowledges_while_the_stream_elects_and_loses_nothing)
