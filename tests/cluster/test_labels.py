#!/usr/bin/python3
"""Labels hold across the cluster (issue 19 item 3, zero-trust checklist item 9): node A and
node B run the same policy and registry (tests/data/policy). A record that alice labels
secret with the cyber caveat on A reaches alice's subscriber on B, and nothing of it reaches
dave (confidential, no caveat) on B: not live, not retained, not in a replay, not in B's
query on his behalf. A restricted record published after it does reach dave on B, so the
absence is the decision, not a delay."""
import os, shutil, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "policy")
TD = "spiffe://kizuna.local/"
pol = tmpdir("kz-clpol-")
for f in ("kizuna.policy", "identities"):
    shutil.copy(os.path.join(FIX, f), pol)
# B runs on A's PKI, not a development PKI of its own, so its policy must be signed
subprocess.run([KIZUNA, "policy", "keygen", "--out", pol], check=True, capture_output=True)
subprocess.run([KIZUNA, "policy", "sign", "--key", pol + "/policy-signing.key", pol + "/kizuna.policy",
                pol + "/identities"], check=True, capture_output=True)
POLICY = ("policy.file = %s/kizuna.policy\npolicy.registry = %s/identities\n"
          "policy.signing_key = %s/policy-signing.pub\n" % (pol, pol, pol))

a = cluster_node("n1", extra=POLICY)
nats = Nats(a.pki, os.path.join(a.dir, "js"))
b = cluster_node("n2", pki_from=a, extra=POLICY)
wait_log(a, "JetStream answers")
wait_log(b, "JetStream answers")
certs = {w: a.issue(w.replace("/", "-"), spiffe=TD + w) for w in ("mod/user/alice", "mod/user/dave")}


def client(node, who, cid, **kw):
    return node.client(cid, cert=certs["mod/user/" + who], **kw)


def labelled(label):
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = [("kz-label", label)]
    return p


def drain(c, wait=1.0):
    got = []
    while True:
        try:
            got.append(c.get(timeout=wait))
        except queue.Empty:
            return got


def test_secret_on_a_reaches_only_the_cleared_on_b():
    alice_b = client(b, "alice", "alice-b")
    dave_b = client(b, "dave", "dave-b")
    assert alice_b.sub("ops/#", 1)[0].value == 1
    assert dave_b.sub("ops/#", 1)[0].value == 1
    alice_a = client(a, "alice", "alice-a")
    alice_a.pub("ops/brief", b"secret-brief", 1, props=labelled("class=secret;caveat=cyber"))
    alice_a.pub("ops/state", b"secret-state", 1, retain=True, props=labelled("class=secret;caveat=cyber"))
    alice_a.pub("ops/open", b"open-brief", 1, props=labelled("class=restricted"))
    got = sorted(m.payload for m in drain(alice_b, 3.0))
    assert got == [b"open-brief", b"secret-brief", b"secret-state"], "alice on B: %r" % got
    m = dave_b.get(timeout=10)
    assert m.payload == b"open-brief", "dave on B got %r first" % m.payload
    dave_b.none(1.0)
    for c in (alice_a, alice_b, dave_b):
        c.close()


def test_retained_replay_and_query_on_b_withhold_it():
    dave = client(b, "dave", "dave-b2")
    dave.sub("ops/#", 1)
    assert [m.payload for m in drain(dave)] == [], "dave got a retained record above him"
    dave.close()
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.UserProperty = [("kz-replay-since", "2020-01-01T00:00:00Z")]
    r = client(b, "dave", "dave-replay")
    assert r.sub("ops/#", 1, props=sp)[0].value == 1
    got = sorted(m.payload for m in drain(r))
    assert got == [b"open-brief"], "dave's replay on B: %r" % got
    r.close()
    carol = client(b, "alice", "alice-replay")
    carol.sub("ops/#", 1, props=sp)
    got = sorted(m.payload for m in drain(carol))
    assert b"secret-brief" in got and b"secret-state" in got, "alice's replay on B: %r" % got
    carol.close()
    time.sleep(1.5)  # the index follows the log
    q = subprocess.run([KIZUNA, "query", "--data", b.data, "--topic", "ops/#", "--format", "ndjson",
                        "--as", TD + "mod/user/dave", "--policy", pol + "/kizuna.policy",
                        "--registry", pol + "/identities"], capture_output=True, text=True)
    assert q.returncode == 0, q.stderr
    assert "open-brief" in q.stdout and "secret" not in q.stdout, q.stdout
    assert "withheld" in q.stderr, q.stderr


run_tests([test_secret_on_a_reaches_only_the_cleared_on_b, test_retained_replay_and_query_on_b_withhold_it])
nats.kill()
shutil.rmtree(pol, ignore_errors=True)
