#!/usr/bin/python3
"""Every node's audit chain is in the cluster (issue 19 item 5, docs/CLUSTER.md "Trust across
the cluster"): node A's audit entries are copied to KZ_AUDIT as they are written.
`kizuna audit verify --cluster n1`, run with node B's configuration, rebuilds A's chain from
the stream and checks it (hashes, signed checkpoints, head) as a local one; after A is stopped
and its audit directory deleted (a lost disk), the chain is still there and still verifies,
with every entry A had."""
import json, os, shutil, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *

a = cluster_node("n1", extra="audit.checkpoint_ms = 200\n")
nats = Nats(a.pki, os.path.join(a.dir, "js"))
b = cluster_node("n2", pki_from=a)
for n in (a, b):
    wait_log(n, "JetStream answers")


def verify(node, cfg_of):
    return subprocess.run([KIZUNA, "audit", "verify", "--cluster", node, "--config", cfg_of.cfg, "--data", cfg_of.data],
                          capture_output=True, text=True, timeout=60)


def local_entries(n):
    with open(os.path.join(n.data, "audit", "audit.log")) as f:
        return [json.loads(l)["n"] for l in f if l.strip()]


def test_a_chain_in_the_cluster_verifies():
    for i in range(5):  # decisions to record: connections, subscriptions, a refused publish
        c = a.client("aud-%d" % i)
        c.sub("aud/#", 1)
        c.pub("$SYS/x", b"no", 1)
        c.close()
    time.sleep(3)  # a checkpoint (200 ms) and the copy (every second)
    r = verify("n1", b)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "node n1: " in r.stdout and "entries from KZ_AUDIT" in r.stdout, r.stdout
    got = int(r.stdout.split("node n1: ")[1].split()[0])
    assert got >= 10, r.stdout


def test_the_chain_survives_the_loss_of_its_disk():
    had = local_entries(a)
    assert a.stop() == 0
    time.sleep(0.5)
    shutil.rmtree(os.path.join(a.data, "audit"))
    r = verify("n1", b)
    assert r.returncode == 0, r.stdout + r.stderr
    got = int(r.stdout.split("node n1: ")[1].split()[0])
    assert got >= len(had), "the cluster has %d entries of A, A had %d" % (got, len(had))


def test_unknown_node_is_an_error():
    r = verify("nobody", b)
    assert r.returncode == 1 and "no audit entries of node nobody" in r.stderr, r.stdout + r.stderr


def test_cluster_goes_with_verify_only():
    r = subprocess.run([KIZUNA, "audit", "show", "--cluster", "n1", "--data", b.data], capture_output=True, text=True)
    assert r.returncode == 2 and "--cluster and --config go with verify only" in r.stderr, r.stdout + r.stderr


run_tests([test_a_chain_in_the_cluster_verifies, test_the_chain_survives_the_loss_of_its_disk,
           test_unknown_node_is_an_error, test_cluster_goes_with_verify_only])
nats.kill()
