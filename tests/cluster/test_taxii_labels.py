#!/usr/bin/python3
"""TAXII labels hold on the node that follows (issue 19 item 3, zero-trust checklist item 9):
nodes A and B run the same signed policy, registry and collections file. The collection's
publish rule labels every object class=secret;rel=jpn. An indicator that alice posts on A is
served by B to carol (secret) once B has followed it, and not to bob (confidential), who may
read the collection: 404 for the object, an empty list, nothing in the manifest. erin (another
organisation) does not see the collection on B at all."""
import json, os, shutil, sys, tempfile, uuid
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *
import requests

TAXII = "application/taxii+json;version=2.1"
pol = tmpdir("kz-cltaxii-")
CID = str(uuid.uuid4())
with open(os.path.join(pol, "collections.json"), "w") as f:
    json.dump([{"id": CID, "title": "policy-governed", "allow_custom": True}], f)
with open(os.path.join(pol, "kizuna.policy"), "w") as f:
    f.write("policy test\nversion 1\nlevels unclassified confidential secret\n"
            "category rel permissive attr=nation jpn usa\n"
            "default-label class=unclassified\n"
            "allow connect where kind=user,node\n"
            "allow subscribe $taxii/%s/# where org=mod,meti\n"
            "allow publish $taxii/%s/objects where org=mod label class=secret;rel=jpn\n" % (CID, CID))
with open(os.path.join(pol, "identities"), "w") as f:
    f.write("spiffe://kizuna.local/mod/user/alice org=mod nation=jpn clearance=secret\n"
            "spiffe://kizuna.local/meti/user/bob org=meti nation=jpn clearance=confidential\n"
            "spiffe://kizuna.local/meti/user/carol org=meti nation=jpn clearance=secret\n"
            "spiffe://kizuna.local/acme/user/erin org=acme nation=usa clearance=secret\n")
# B runs on A's PKI, not a development PKI of its own, so its policy must be signed
subprocess.run([KIZUNA, "policy", "keygen", "--out", pol], check=True, capture_output=True)
subprocess.run([KIZUNA, "policy", "sign", "--key", pol + "/policy-signing.key", pol + "/kizuna.policy",
                pol + "/identities"], check=True, capture_output=True)
HA, HB = free_port(), free_port()
COMMON = ("taxii.collections = %s/collections.json\npolicy.file = %s/kizuna.policy\npolicy.registry = %s/identities\n"
          "policy.signing_key = %s/policy-signing.pub\n" % (pol, pol, pol, pol))
a = cluster_node("n1", extra="https.listen = 127.0.0.1:%d\n%s" % (HA, COMMON))
nats = Nats(a.pki, os.path.join(a.dir, "js"))
b = cluster_node("n2", pki_from=a, extra="https.listen = 127.0.0.1:%d\n%s" % (HB, COMMON))
for n in (a, b):
    wait_log(n, "JetStream answers")
who = {n: a.issue(n, spiffe="spiffe://kizuna.local/%s/user/%s" % (o, n))
       for n, o in (("alice", "mod"), ("bob", "meti"), ("carol", "meti"), ("erin", "acme"))}
CA = os.path.join(a.pki, "ca.pem")


def sess(name):
    x = requests.Session()
    x.cert = who[name]
    x.headers["Accept"] = TAXII
    return x


def base(port):
    return "https://localhost:%d/taxii2/api/collections/" % port


def indicator():
    return {"type": "indicator", "spec_version": "2.1", "id": "indicator--" + str(uuid.uuid4()),
            "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z", "name": "labelled",
            "pattern": "[ipv4-addr:value = '198.51.100.7']", "pattern_type": "stix",
            "valid_from": "2024-01-01T00:00:00Z"}


def test_secret_object_on_a_served_by_b_only_to_the_cleared():
    ind = indicator()
    objs_a = base(HA) + CID + "/objects/"
    r = sess("alice").post(objs_a, data=json.dumps({"objects": [ind]}), headers={"Content-Type": TAXII}, verify=CA)
    assert r.status_code == 202 and r.json()["success_count"] == 1, r.text
    objs_b = base(HB) + CID + "/objects/"
    deadline = time.time() + 20
    while time.time() < deadline and sess("carol").get(objs_b + ind["id"] + "/", verify=CA).status_code != 200:
        time.sleep(0.3)
    r = sess("carol").get(objs_b + ind["id"] + "/", verify=CA)
    assert r.status_code == 200 and r.json()["objects"][0]["id"] == ind["id"], (r.status_code, r.text)
    c = sess("bob").get(base(HB) + CID + "/", verify=CA).json()
    assert c["can_read"] is True and c["can_write"] is False, c
    assert sess("bob").get(objs_b + ind["id"] + "/", verify=CA).status_code == 404
    assert sess("bob").get(objs_b, verify=CA).json() == {"more": False}
    m = sess("bob").get(base(HB) + CID + "/manifest/", verify=CA)
    assert m.status_code == 200 and not m.json().get("objects"), m.text
    assert sess("erin").get(base(HB), verify=CA).json() == {}
    assert sess("erin").get(objs_b, verify=CA).status_code == 404


run_tests([test_secret_object_on_a_served_by_b_only_to_the_cleared])
nats.kill()
