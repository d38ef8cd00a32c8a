#!/usr/bin/python3
"""Trust is cluster-wide (issue 19 item 5, docs/CLUSTER.md "Trust across the cluster"): node A
holds the CA; node B shares A's CA but keeps its own revocation list file and its own copy of
the signed policy. Through KZ_TRUST:
- a certificate revoked on A (`kizuna ca revoke` there) is in force on B within
  tls.cert_check_ms of reaching it: B closes the identity's open connection and refuses its
  new handshakes;
- a newer signed policy reloaded on A (`kizuna policy reload`) is written to B's files and
  in force on B: a subscription the old policy refused is granted on B;
- B checks both: its files now hold what A signed (byte for byte)."""
import os, shutil, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "policy")
TD = "spiffe://kizuna.local/"
CHECK_MS = 500
work = tmpdir("kz-cltrust-")
pa, pb = os.path.join(work, "a"), os.path.join(work, "b")
for d in (pa, pb):
    os.makedirs(d)
    for f in ("kizuna.policy", "identities"):
        shutil.copy(os.path.join(FIX, f), d)
subprocess.run([KIZUNA, "policy", "keygen", "--out", work], check=True, capture_output=True)
KEY = os.path.join(work, "policy-signing.key")
for d in (pa, pb):
    subprocess.run([KIZUNA, "policy", "sign", "--key", KEY, "--seq", "1", d + "/kizuna.policy", d + "/identities"],
                   check=True, capture_output=True)


def conf(d):
    return ("policy.file = %s/kizuna.policy\npolicy.registry = %s/identities\npolicy.signing_key = %s\n"
            "tls.cert_check_ms = %d\n" % (d, d, os.path.join(work, "policy-signing.pub"), CHECK_MS))


a = cluster_node("n1", extra=conf(pa))
nats = Nats(a.pki, os.path.join(a.dir, "js"))
b = cluster_node("n2", pki_from=a, extra=conf(pb) + "tls.crl = %s/crl.pem\n" % work)
for n in (a, b):
    wait_log(n, "JetStream answers")
    wait_log(n, "sharing trust documents")
def ca_issue(who):
    out = os.path.join(work, who.replace("/", "-"))
    subprocess.run([KIZUNA, "ca", "issue", "--config", a.cfg, "--data", a.data, "--id", TD + who, "--lifetime", "1h",
                    "--out", out], check=True, capture_output=True)
    return os.path.join(out, "cert.pem"), os.path.join(out, "key.pem")


alice = ca_issue("mod/user/alice")
dave = ca_issue("mod/user/dave")


def test_revocation_on_a_is_in_force_on_b():
    c = b.client("dave-b", cert=dave)
    assert c.rc == 0
    t0 = time.time()
    r = subprocess.run([KIZUNA, "ca", "revoke", "--config", a.cfg, "--data", a.data, "--cert", dave[0],
                        "--reason", "keyCompromise"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rc = c.disc.get(timeout=20)
    took = time.time() - t0
    assert rc == 0x87, "dave's connection on B ended with %r" % rc
    try:  # TLS 1.3: the client learns of the refusal at its first read
        ok = Raw(b, cert=dave).connect(b"dave-again") is None
    except (ssl.SSLError, OSError):
        ok = True
    assert ok, "B still accepts dave's handshake"
    wait_log(b, "from KZ_TRUST written to")
    print("  dave's connection on B closed %.1f s after the revocation on A" % took)
    with open(os.path.join(work, "crl.pem"), "rb") as f1, open(os.path.join(a.pki, "crl.pem"), "rb") as f2:
        assert f1.read() == f2.read(), "B's list is not A's"


def test_newer_policy_on_a_is_in_force_on_b():
    c = b.client("alice-b", cert=alice)
    assert c.sub("zz/#", 1)[0].value == 0x87, "the old policy already allows zz/#"
    with open(os.path.join(pa, "kizuna.policy")) as f:
        text = f.read().replace("version fixture-1", "version fixture-2")
    with open(os.path.join(pa, "kizuna.policy"), "w") as f:
        f.write(text + "allow publish,subscribe zz/# where org=mod\n")
    subprocess.run([KIZUNA, "policy", "sign", "--key", KEY, "--seq", "2", pa + "/kizuna.policy",
                    pa + "/identities"], check=True, capture_output=True)
    r = subprocess.run([KIZUNA, "policy", "reload", "--config", a.cfg, "--data", a.data], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_log(b, "version fixture-2/")
    assert c.sub("zz/#", 1)[0].value == 1, "B does not grant what the new policy allows"
    for f in ("kizuna.policy", "kizuna.policy.manifest", "kizuna.policy.manifest.sig"):
        with open(os.path.join(pa, f), "rb") as x, open(os.path.join(pb, f), "rb") as y:
            assert x.read() == y.read(), f
    c.close()


run_tests([test_revocation_on_a_is_in_force_on_b, test_newer_policy_on_a_is_in_force_on_b])
nats.kill()
shutil.rmtree(work, ignore_errors=True)
