#!/usr/bin/python3
"""A nats-server cut off from the others (issue 19 item 9, docs/CLUSTER.md "Faults and what
each does"): 3 nats-servers (JetStream R3) and 3 nodes from scripts/cluster-up, the servers'
routes through TCP proxies this test runs (KZ_ROUTE_PROXY). Node 3 uses nats-server 3 (first
in its cluster.nats). A QoS 1 publisher on node 3 and one on node 1, subscribers on nodes 1
and 2. Then nats-server 3 is cut off from the others: every route connection to or from it is
closed, and new ones are refused. nats-server 3 still answers node 3 (TCP and pings), but
JetStream does not answer through it: node 3 must move to another server by itself and serve
its publisher again. Asserted: every acknowledged message reaches both subscribers, each
publisher's in order; node 3 moved (kizuna_cluster_server_moves_total); how long node 3's
publisher waited is reported. The cut is healed at the end."""
import os, socket, ssl, struct, subprocess, sys, threading, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from threeup import Cluster, Publisher, check_delivered, free_base, stop_publishers

BASE = free_base(70)
PROXY = BASE + 60


class Proxy:
    """Forwards 127.0.0.1:PROXY+3i+j to server j's route port, for i != j; cut(k) closes every
    connection to or from server k and refuses new ones until heal()."""

    def __init__(self):
        self.cut_off = None
        self.conns = []  # (i, j, a, b)
        self.lock = threading.Lock()
        self.listeners = []
        for i in range(3):
            for j in range(3):
                if i != j:
                    ls = socket.socket()
                    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    ls.bind(("127.0.0.1", PROXY + 3 * i + j))
                    ls.listen(16)
                    self.listeners.append(ls)
                    threading.Thread(target=self.accept, args=(ls, i, j), daemon=True).start()

    def accept(self, ls, i, j):
        while True:
            try:
                a, _ = ls.accept()
            except OSError:
                return
            if self.cut_off in (i, j):
                a.close()
                continue
            try:
                b = socket.create_connection(("127.0.0.1", BASE + 10 + j), 2)
            except OSError:
                a.close()
                continue
            with self.lock:
                self.conns.append((i, j, a, b))
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self.pump, args=(x, y), daemon=True).start()

    @staticmethod
    def pump(x, y):
        try:
            while True:
                d = x.recv(65536)
                if not d:
                    break
                y.sendall(d)
        except OSError:
            pass
        for s in (x, y):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self, k):
        self.cut_off = k
        with self.lock:
            for i, j, a, b in self.conns:
                if k in (i, j):
                    for s in (a, b):
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass

    def heal(self):
        self.cut_off = None


proxy = Proxy()
CL = Cluster("kz-part-", BASE, {"KZ_ROUTE_PROXY": str(PROXY)})
D, PKI, PORT, logtext = CL.dir, CL.pki, CL.port, CL.logtext


def test_node_on_a_cut_off_server_moves_and_nothing_is_lost():
    subs = {i: CL.subscriber(i, "part") for i in (1, 2)}
    time.sleep(1.0)
    pubs = [Publisher(CL, "q3", 3, "part", 10), Publisher(CL, "q1", 1, "part", 10)]
    for p in pubs:
        p.start()
    time.sleep(3)
    before = len(pubs[0].acked)
    proxy.cut(2)  # nats-server 3 (index 2)
    t_cut = time.time()
    # node 3's publisher is served again once node 3 moved to another server
    while time.time() - t_cut < 60 and len(pubs[0].acked) < before + 20:
        time.sleep(0.2)
    served = time.time() - t_cut
    time.sleep(3)
    stop_publishers(pubs, 15)
    assert len(pubs[0].acked) >= before + 20, "node 3's publisher was not served again within 60 s of the cut " \
        "(%d acknowledged before, %d after)" % (before, len(pubs[0].acked))
    moves = CL.metric(3, "kizuna_cluster_server_moves_total")
    assert moves and moves >= 1, "node 3 did not move to another server (%r)" % moves
    # every acknowledged message on both subscribers, in order
    lost, disorder, _ = check_delivered(pubs, subs, 60)
    for c, _ in subs.values():
        c.loop_stop()
    for p in pubs:
        print("  %s: %d acknowledged, %d refused, longest wait between two acknowledgements %.1f s"
              % (p.name, len(p.acked), p.refused, p.gap))
    print("  node 3's publisher served again %.1f s after the cut; node 3 moved %d time(s)" % (served, moves))
    assert not lost, "acknowledged and not delivered: %r" % lost
    assert not disorder, "out of order: %r" % disorder


CL.run(test_node_on_a_cut_off_server_moves_and_nothing_is_lost, proxy.heal)
