#!/usr/bin/python3
"""The cluster's replicator (docs/CLUSTER.md, issue 19): a node with cluster.nats publishes
every record it accepts to JetStream's KZ_RECORDS, acknowledges QoS 1 only once JetStream has
it too, refuses QoS 1 while JetStream does not answer (cluster.on_quorum_loss = refuse), and
publishes again from its own log what JetStream lost — here, all of a nats-server's files,
as a power loss that took its unsynced data would. One real nats-server 2.9 with JetStream and
mutual TLS, started by this test on loopback ports; replicas = 1 (one server)."""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *

n = cluster_node("n1")
nats = Nats(n.pki, os.path.join(n.dir, "js"))
wait_log(n, "JetStream answers")


def test_acknowledged_only_once_in_jetstream():
    r = Raw(n)
    assert r.connect(b"repl-pub")[0] == 2
    publish_acked(r, b"sensors/a", b"m-", 200)
    # every acknowledged record is in JetStream by the time its PUBACK came, once
    got = stream_records(n)
    assert got and got[0] == 200 and got[2:4] == (0, 0), got
    assert got[1] < got[0] and 2 <= got[4] <= 64, got  # batched, within cluster.batch_records (64)
    r.send(bytes([0xE0, 0]))
    st = subprocess.run([KIZUNA, "cluster", "status", "--config", n.cfg, "--data", n.data], capture_output=True,
                        text=True, timeout=30)
    assert st.returncode == 0, st.stderr
    assert "stream: KZ_RECORDS, %d messages" % got[1] in st.stdout, st.stdout
    assert "this node's records in the stream: 200" in st.stdout, st.stdout
    assert "to publish again: 0" in st.stdout, st.stdout
    m = metrics(n)
    assert m["kizuna_cluster_connected"] == 1 and m["kizuna_cluster_quorum"] == 1, m
    assert m["kizuna_cluster_published_total"] >= 200 and m["kizuna_cluster_pending"] == 0, m


def test_refused_without_quorum_then_acknowledged():
    r = Raw(n)
    assert r.connect(b"repl-q")[0] == 2
    nats.p.send_signal(signal.SIGSTOP)
    try:
        for i in range(1, 31):  # stored here; their PUBACKs wait for JetStream
            publish(r, b"sensors/a", b"waits-%d" % i, i)
        time.sleep(2.5)  # past cluster.publish_timeout_ms: no quorum
        publish(r, b"sensors/a", b"refused", 31)
        pid, rc, why = puback(r)
        assert (pid, rc) == (31, 0x97), (pid, rc, why)
        assert "no JetStream quorum" in why, why
    finally:
        nats.p.send_signal(signal.SIGCONT)
    acks = sorted(puback(r)[:2] for _ in range(30))
    assert acks == [(i, 0) for i in range(1, 31)], acks
    # the refused one is nowhere; the 30 published again (in the same batches, with the same
    # Nats-Msg-Id, after the server stored the first ones) are there once
    got = wait_records(n, 230)
    assert got and got[0] == 230 and got[2:4] == (0, 0), got
    r.send(bytes([0xE0, 0]))


def test_jetstream_files_lost_then_published_again():
    """kill -9 the server and delete its JetStream files: the node publishes every record
    again from its own log (what JetStream alone would have lost)."""
    nats.kill()
    shutil.rmtree(nats.store)
    nats.start()
    got = wait_records(n, 230, 30)
    assert got and got[0] == 230 and got[2:4] == (0, 0), got
    assert "publishing the rest again from the log" in n.logtext()


def test_killed_node_publishes_again_once():
    """kill -9 the node right after a burst was acknowledged: the watermark it saved (every
    200 ms) is behind what JetStream has. After its restart it reads back its messages above
    the watermark (docs/CLUSTER.md "Batches") and takes their records as confirmed instead of
    publishing them again: JetStream stores none of them twice."""
    r = Raw(n)
    assert r.connect(b"repl-burst")[0] == 2
    publish_acked(r, b"sensors/b", b"burst-", 400)
    n.proc.kill()
    n.proc.wait()
    before = n.logtext().count("JetStream answers")
    n.start()
    deadline = time.time() + 30
    while n.logtext().count("JetStream answers") == before and time.time() < deadline:
        time.sleep(0.2)
    got = wait_records(n, 630)
    assert got and got[0] == 630 and got[2:4] == (0, 0), (got, n.logtext()[-2000:])
    m = metrics(n)
    assert m["kizuna_cluster_pending"] == 0, m
    # how often this exercised the read-back (a save that happened to come after the last
    # acknowledgement leaves nothing to publish again)
    print("  read back after the restart: %s" % ("yes" if "taken as confirmed, not published again" in n.logtext()
                                                  else "no"))


def test_stops_cleanly():
    """SIGTERM with the replicator connected: the node waits for what is in flight, saves its
    watermark and exits 0 (under the sanitizers: with nothing leaked)."""
    r = Raw(n)
    assert r.connect(b"repl-last")[0] == 2
    publish(r, b"sensors/a", b"last", 1)
    assert puback(r)[1] == 0
    assert n.stop() == 0, n.logtext()[-2000:]
    with open(os.path.join(n.data, "cluster.state")) as f:
        assert f.read().startswith("confirmed "), "no watermark saved"
    assert "runtime error" not in n.logtext() and "AddressSanitizer" not in n.logtext()


def test_configuration_errors_stop_the_node():
    """A cluster configuration the node cannot run is refused at start, with what to do."""
    import tempfile
    d = tmpdir("kz-clcfg-")
    base = ("mqtt.listen = 127.0.0.1:%d\nhttps.listen = 127.0.0.1:0\npolicy.open = 1\nnode_id = bad\n"
            "cluster.nats = tls://127.0.0.1:%d\n" % (free_port(), nats_port))
    cases = [
        ("cluster.cert = %s/pki/admin.pem\ncluster.key = %s/pki/admin.key\ncluster.on_quorum_loss = maybe\n"
         % (n.data, n.data), "cluster.on_quorum_loss: 'maybe' is neither refuse nor local"),
        ("", "cluster.nats needs cluster.cert and cluster.key"),
        ("cluster.cert = %s/pki/admin.pem\ncluster.key = %s/pki/admin.key\ncluster.publish_window = 0\n"
         % (n.data, n.data), "cluster.publish_window"),
    ]
    for extra, want in cases:
        cfg = os.path.join(d, "kizuna.conf")
        with open(cfg, "w") as f:
            f.write(base + extra)
        r = subprocess.run([KIZUNA, "serve", "--config", cfg, "--data", os.path.join(d, "var")],
                           capture_output=True, text=True, timeout=30)
        out = r.stdout + r.stderr
        assert r.returncode != 0 and want in out, "rc %d for %r: %s" % (r.returncode, extra, out[-800:])
    shutil.rmtree(d, ignore_errors=True)


run_tests([test_configuration_errors_stop_the_node, test_acknowledged_only_once_in_jetstream, test_refused_without_quorum_then_acknowledged,
           test_jetstream_files_lost_then_published_again, test_killed_node_publishes_again_once, test_stops_cleanly])
nats.kill()
