#!/usr/bin/python3
"""TAXII follows the stream (issue 19 item 3): two nodes with the same collections file. Objects
posted to node A's collection are served by node B from the same collection, with no restart,
in the same order; a deletion on A removes the object on B; a page on B at the end of the
collection continues with the objects posted after it (date_added order kept); B restarted
serves the same list."""
import json, os, sys, uuid
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *
import requests

TAXII = "application/taxii+json;version=2.1"
HA, HB = free_port(), free_port()
a = cluster_node("n1", extra="https.listen = 127.0.0.1:%d\n" % HA)
nats = Nats(a.pki, os.path.join(a.dir, "js"))
COLLS = os.path.join(a.data, "taxii-collections.json")
b = cluster_node("n2", pki_from=a, extra="https.listen = 127.0.0.1:%d\ntaxii.collections = %s\n" % (HB, COLLS))
for n in (a, b):
    wait_log(n, "JetStream answers")
COLL = json.load(open(COLLS))[0]["id"]
CA = os.path.join(a.pki, "ca.pem")
ADMIN = (os.path.join(a.pki, "admin.pem"), os.path.join(a.pki, "admin.key"))


def url(port, rest=""):
    return "https://localhost:%d/taxii2/api/collections/%s/%s" % (port, COLL, rest)


def sess():
    x = requests.Session()
    x.verify = CA
    x.cert = ADMIN
    x.headers["Accept"] = TAXII
    return x


def indicator(i):
    return {"type": "indicator", "spec_version": "2.1", "id": "indicator--" + str(uuid.uuid4()),
            "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z", "name": "t%d" % i,
            "pattern": "[ipv4-addr:value = '198.51.100.%d']" % (i % 250), "pattern_type": "stix",
            "valid_from": "2024-01-01T00:00:00Z"}


def post(port, objs):
    r = sess().post(url(port, "objects/"), data=json.dumps({"objects": objs}), headers={"Content-Type": TAXII},
                    verify=CA)
    assert r.status_code == 202 and r.json()["status"] == "complete", (r.status_code, r.text)


def ids(port, q=""):
    out, nxt = [], None
    while True:
        r = sess().get(url(port, "objects/?limit=50%s%s" % (q, "&next=" + nxt if nxt else "")), verify=CA)
        if r.status_code != 200:
            return out, r
        j = r.json()
        out += [o["id"] for o in j.get("objects", [])]
        nxt = j.get("next")
        if not j.get("more"):
            return out, r


def wait_ids(port, want, timeout=15):
    deadline = time.time() + timeout
    got = []
    while time.time() < deadline:
        got, _ = ids(port)
        if got == want:
            return got
        time.sleep(0.3)
    return got


def test_objects_posted_on_a_are_served_by_b():
    objs = [indicator(i) for i in range(120)]
    post(HA, objs[:60])
    post(HA, objs[60:])
    on_a, _ = ids(HA)
    assert on_a == [o["id"] for o in objs], "A: %d objects" % len(on_a)
    on_b = wait_ids(HB, on_a)
    assert on_b == on_a, "B serves %d of A's %d objects, order kept: %s" % (len(on_b), len(on_a), on_b == on_a[:len(on_b)])


def test_added_after_on_b_continues_with_later_posts():
    _, r = ids(HB)
    last = r.headers.get("X-TAXII-Date-Added-Last")
    assert last, r.headers
    more = [indicator(1000 + i) for i in range(10)]
    post(HA, more)
    deadline = time.time() + 15
    got = []
    while time.time() < deadline and len(got) < 10:
        got, _ = ids(HB, "&added_after=" + last)
        time.sleep(0.3)
    assert got == [o["id"] for o in more], got


def test_delete_on_a_removes_on_b():
    on_a, _ = ids(HA)
    victim = on_a[0]
    assert sess().get(url(HB, "objects/%s/" % victim), verify=CA).status_code == 200, "B lacks it before"
    r = sess().delete(url(HA, "objects/%s/" % victim), verify=CA)
    assert r.status_code == 200, (r.status_code, r.text)
    deadline = time.time() + 15
    while time.time() < deadline:
        r = sess().get(url(HB, "objects/%s/" % victim), verify=CA)
        if r.status_code == 404:
            break
        time.sleep(0.3)
    assert r.status_code == 404, (r.status_code, r.text[:200])


def test_b_restarted_serves_the_same():
    before, _ = ids(HB)
    b.stop()
    b.log = open(b.log.name, "a")
    b.start()
    wait_log(b, "JetStream answers")
    after, _ = ids(HB)
    assert after == before, "B after a restart: %d objects, before %d" % (len(after), len(before))
    on_a, _ = ids(HA)
    assert after == on_a


run_tests([test_objects_posted_on_a_are_served_by_b, test_added_after_on_b_continues_with_later_posts,
           test_delete_on_a_removes_on_b, test_b_restarted_serves_the_same])
nats.kill()
