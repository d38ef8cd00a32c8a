#!/usr/bin/python3
"""The web console in a real browser (docs/CONSOLE.md): Debian's Chromium driven by Playwright
(console/test/drive.mjs) with a client certificate, against a real node serving its build.
- Every page loads without console errors (screenshots saved to KZ_CONSOLE_SHOTS when set).
- A record published over MQTT appears in the live view (mqtt.js over /mqtt).
- A ship replayed from AIS (gpsd's sample, as UDP datagrams to the node's AIS adapter) appears
  on the map with its symbol.
- Under the policy of tests/data/policy, a person of lower clearance sees neither a secret
  record in the live view, nor a secret entity in the picture, nor a TLP RED object meant for
  another on the Sharing page, while the one it is meant for sees all three.
- On the Sharing page a STIX bundle file is imported into a collection (taxii.max_page = 2:
  the third object comes with More); filtered by type and TLP, only the matching indicator is
  listed; opening it shows its version and sightings.
- On the Picture page, a task is created for an agent (that registered its kinds) and
  cancelled; the node's API shows it CANCELLED.
- A revoke on the Connections page (with its in-page confirmation) closes that client's
  connection (DISCONNECT 0x87), and the page listed the client first; an enrolment token made
  on that page is redeemed by `kizuna enroll`.
- The node's answers at /: the strict Content-Security-Policy, gzip, caching, 401 without a
  certificate."""
import json, os, shutil, subprocess, sys, tempfile, threading, time, urllib.request
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kzharness import *

HERE = os.path.dirname(os.path.abspath(__file__))
CONSOLE = os.path.join(HERE, "..", "..", "console")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM) or not shutil.which("node") or not os.path.isdir(os.path.join(CONSOLE, "node_modules")):
    print("SKIP: Chromium, node or the console's node_modules are missing (scripts/deps --test; cmake builds the console)")
    sys.exit(77)

AIS = os.path.join(HERE, "..", "..", "..", "shared", "data", "tracks", "gpsd", "sample.aivdm")
UPORT = free_port()
node = Node("tls.cert_check_ms = 500\nmqtt.origin_property = 1\ntaxii.max_page = 2\nadapter.ais.udp = 127.0.0.1:%d\n"
            "adapter.ais.identity = spiffe://kizuna.local/dev/service/ais\n" % UPORT)
url = "https://localhost:%d/" % node.https_port()
if "console: " not in node.logtext() or "no files in" in node.logtext():
    print("SKIP: the console is not built next to this kizuna: " + node.logtext()[-500:])
    sys.exit(77)


def drive(n, cert, key, **ask):
    """Runs the driver; with live, publish() is called once the live view is subscribed."""
    publish = ask.pop("publish", None)
    arg = dict(url="https://localhost:%d/" % n.https_port(), cert=cert, key=key, chromium=CHROMIUM, **ask)
    p = subprocess.Popen(["node", os.path.join(CONSOLE, "test", "drive.mjs"), json.dumps(arg)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = []
    if publish:
        for line in p.stderr:
            err.append(line)
            if "LIVE-READY" in line:
                break
        threading.Thread(target=publish, daemon=True).start()
    out, rest = p.communicate(timeout=120)
    assert p.returncode == 0 and out.strip(), "driver failed: %s%s" % ("".join(err), rest)
    r = json.loads(out.strip().splitlines()[-1])
    assert "error" not in r, r["error"] + "".join(err) + rest
    return r


def admin():
    return os.path.join(node.pki, "admin.pem"), os.path.join(node.pki, "admin.key")


def test_answers_at_root():
    import requests
    s = requests.Session()
    r = s.get(url, verify=os.path.join(node.pki, "ca.pem"), cert=admin())
    assert r.status_code == 200 and "<title>kizuna console</title>" in r.text
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'self'" in csp, csp
    assert r.headers.get("Content-Encoding") == "gzip" and r.headers["Cache-Control"] == "no-cache"
    js = [l for l in r.text.split('"') if l.startswith("/assets/app-") and l.endswith(".js")][0]
    a = s.get(url.rstrip("/") + js, verify=os.path.join(node.pki, "ca.pem"), cert=admin())
    assert a.status_code == 200 and "immutable" in a.headers["Cache-Control"], a.headers
    again = s.get(url, verify=os.path.join(node.pki, "ca.pem"), cert=admin(), headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    r = requests.get(url, verify=os.path.join(node.pki, "ca.pem"))
    assert r.status_code == 401 and "certificate" in r.json()["description"]
    r = s.post(url, verify=os.path.join(node.pki, "ca.pem"), cert=admin(), data="x")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD" and "console" in r.json()["description"]
    r = s.get(url + "api/v1/nothing-here", verify=os.path.join(node.pki, "ca.pem"), cert=admin())
    assert r.status_code == 404 and r.json()["http_status"] == "404"


def test_every_page_loads_without_console_errors():
    p = node.client("entity-pub")
    p.pub("kz/entity/ship-1", json.dumps({"id": "ship-1", "name": "KIZUNA MARU", "type": "a-f-S",
                                          "position": {"lat": 35.4, "lon": 139.7}}), qos=1)
    p.close()
    time.sleep(0.5)
    shots = os.environ.get("KZ_CONSOLE_SHOTS")
    if shots:
        os.makedirs(shots, exist_ok=True)
    cert, key = admin()
    r = drive(node, cert, key, pages=["overview", "live", "picture", "sharing", "connections", "audit"],
              shots=shots, verify=True)
    for name, pg in r["pages"].items():
        assert not pg["errors"], "%s: console errors %r" % (name, pg["errors"])
    assert "spiffe://kizuna.local/dev/user/admin" in r["pages"]["overview"]["text"]
    assert "KIZUNA MARU" in r["pages"]["picture"]["text"], r["pages"]["picture"]["text"][:500]
    assert "connect" in r["pages"]["audit"]["text"] and "spiffe://kizuna.local/dev/user/admin" in r["pages"]["audit"]["text"]
    assert r["verify"]["verdict"].startswith("chain intact"), r["verify"]
    assert not r["verify"]["errors"], r["verify"]["errors"]


def test_record_published_over_mqtt_appears_live():
    token = "console-%d" % time.time_ns()

    def publish():
        c = node.client("live-pub")
        for _ in range(40):
            c.pub("demo/console", token, qos=1)
            time.sleep(0.25)
        c.close()

    cert, key = admin()
    r = drive(node, cert, key, live={"filter": "demo/#", "want": token}, publish=publish,
              shots=os.environ.get("KZ_CONSOLE_SHOTS"))
    assert r["live"]["seen"], r["live"]
    assert not r["live"]["errors"], r["live"]["errors"]
    assert "spiffe://kizuna.local/dev/user/admin" in r["live"]["rows"], r["live"]  # its origin (mqtt.origin_property)


def test_ship_replayed_from_ais_appears_on_the_map():
    if not os.path.exists(AIS):
        print("  (no %s: skipped)" % AIS)
        return
    import socket, requests
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for l in open(AIS):
        if l.startswith("!"):
            u.sendto(l.encode(), ("127.0.0.1", UPORT))
    kw = dict(verify=os.path.join(node.pki, "ca.pem"), cert=admin(), timeout=10)
    ship = until(lambda: requests.get(url + "api/v1/entities/mmsi:351759000", **kw).status_code == 200)
    assert ship, "the AIS adapter made no entity"
    cert, key = admin()
    r = drive(node, cert, key, pages=["picture"])
    pic = r["pages"]["picture"]
    assert "EVER DIADEM" in pic["text"], pic["text"][:800]
    assert pic["symbols"] >= 2, pic  # drawn on the map, not only listed
    assert not pic["errors"], pic["errors"]


def test_bundle_imported_and_filtered_on_the_sharing_page():
    green, red = ("marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
                  "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1")
    t = "2026-11-01T00:00:00.000Z"
    def ind(uid, name, mark):
        return {"type": "indicator", "spec_version": "2.1", "id": "indicator--%s" % uid, "created": t, "modified": t,
                "name": name, "pattern": "[ipv4-addr:value = '198.51.100.%d']" % len(name), "pattern_type": "stix",
                "valid_from": t, "object_marking_refs": [mark]}
    bundle = {"type": "bundle", "id": "bundle--6f1c2b53-8e0c-4a4c-9d6a-2f4a2a0c0c01", "objects": [
        ind("11111111-2222-4333-8444-555555555501", "green-one", green),
        ind("11111111-2222-4333-8444-555555555502", "red-one", red),
        {"type": "malware", "spec_version": "2.1", "id": "malware--11111111-2222-4333-8444-555555555503",
         "created": t, "modified": t, "name": "not-an-indicator", "is_family": False}]}
    path = os.path.join(node.dir, "small-bundle.json")
    with open(path, "w") as f:
        json.dump(bundle, f)
    cert, key = admin()
    r = drive(node, cert, key, **{"import": {"file": path, "tlp": "GREEN"}}, shots=os.environ.get("KZ_CONSOLE_SHOTS"))
    im = r["import"]
    assert "3 accepted, 0 refused" in im["imported"] and "2 shown" in im["imported"], im
    assert "3 shown" in im["paged"], im  # taxii.max_page = 2: the rest came with More
    assert "green-one" in im["rows"] and "red-one" not in im["rows"] and "not-an-indicator" not in im["rows"], im
    assert "indicator--11111111-2222-4333-8444-555555555501" in im["detail"] and "version" in im["versions"], im
    assert not im["errors"], im["errors"]


def test_task_created_and_cancelled_on_the_picture_page():
    import requests
    kw = dict(verify=os.path.join(node.pki, "ca.pem"), cert=admin(), timeout=10)
    r = requests.put(url + "api/v1/agents/me/kinds", json={"kinds": ["observe"]}, **kw)
    assert r.status_code == 200, r.text
    cert, key = admin()
    r = drive(node, cert, key, task={"kind": "observe"}, shots=os.environ.get("KZ_CONSOLE_SHOTS"))
    t = r["task"]
    assert t["id"] and t["state"] == "CANCELLED", t
    assert not t["errors"], t["errors"]
    got = requests.get(url + "api/v1/tasks/" + t["id"], **kw).json()
    assert got["state"] == "CANCELLED" and got["kind"] == "observe" and got["by"] == "tasker", got


def test_revoke_from_the_console_closes_the_connection():
    d = os.path.join(node.dir, "victim")
    subprocess.run([KIZUNA, "ca", "issue", "--data", node.data, "--id", "spiffe://kizuna.local/dev/user/victim",
                    "--out", d], check=True, capture_output=True)
    victim = (os.path.join(d, "cert.pem"), os.path.join(d, "key.pem"))
    serial = subprocess.run(["openssl", "x509", "-in", victim[0], "-noout", "-serial"], capture_output=True,
                            text=True).stdout.strip().split("=")[1]
    c = node.client("victim-client", cert=victim)
    cert, key = admin()
    r = drive(node, cert, key, revoke={"serial": serial, "client_id": "victim-client",
                                       "token_for": "spiffe://kizuna.local/dev/sensor/new1"},
              shots=os.environ.get("KZ_CONSOLE_SHOTS"))
    tok = r["token"].split("--token ")[1].split()[0]
    d2 = os.path.join(node.dir, "new1")
    e = subprocess.run([KIZUNA, "enroll", "--port", str(node.port), "--cafile", os.path.join(node.pki, "ca.pem"),
                        "--token", tok, "--out", d2], capture_output=True, text=True)
    assert e.returncode == 0 and os.path.exists(os.path.join(d2, "cert.pem")), e.stderr
    assert r["listed"], "the Connections page did not list the client"
    assert "revoked" in r["revoke"]["note"] and not r["revoke"]["errors"], r["revoke"]
    rc = c.disc.get(timeout=15)
    c.c.loop_stop()  # paho would reconnect, and be refused at the handshake
    assert rc == 0x87, "the revoked client got %r" % rc
    out = subprocess.run([KIZUNA, "ca", "list", "--data", node.data], capture_output=True, text=True).stdout
    assert any(serial.lstrip("0") in l and "revoked" in l for l in out.splitlines()), out


def test_lower_clearance_sees_no_labelled_record_or_entity():
    fix = os.path.join(HERE, "..", "data", "policy")
    tmp = tmpdir("kz-con-pol-")
    for f in ("kizuna.policy", "identities"):
        shutil.copy(os.path.join(fix, f), tmp)
    with open(os.path.join(tmp, "kizuna.policy"), "a") as f:  # the picture and TAXII, for the organisation
        f.write("allow publish,subscribe kz/entity/# where org=mod\nallow publish,subscribe $taxii/# where org=mod\n")
    n = Node("policy.file = %s/kizuna.policy\npolicy.registry = %s/identities\n" % (tmp, tmp))
    td = "spiffe://kizuna.local/"
    alice = n.issue("alice", spiffe=td + "mod/user/alice")  # secret, cyber, operator
    dave = n.issue("dave", spiffe=td + "mod/user/dave")     # confidential, operator
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    secret = Properties(PacketTypes.PUBLISH)
    secret.UserProperty = [("kz-label", "class=secret;caveat=cyber")]
    a = n.client("alice-pub", cert=alice)
    a.pub("kz/entity/sub-9", json.dumps({"id": "sub-9", "name": "SECRET SUB", "position": {"lat": 30, "lon": 140}}),
          1, props=secret)
    a.pub("kz/entity/buoy-1", json.dumps({"id": "buoy-1", "name": "OPEN BUOY", "position": {"lat": 31, "lon": 141}}), 1)
    a.close()
    time.sleep(0.5)
    token = "%d" % time.time_ns()

    def publish():
        c = n.client("alice-live", cert=alice)
        for _ in range(40):
            c.pub("ops/brief", "secret-" + token, 1, props=secret)
            c.pub("ops/brief", "open-" + token, 1)
            time.sleep(0.25)
        c.close()

    # two TAXII objects: one TLP GREEN, one TLP RED for alice's eyes only (audience)
    import requests
    base = "https://localhost:%d" % n.https_port()
    kw = dict(verify=os.path.join(n.pki, "ca.pem"), cert=alice, timeout=10)
    h = {"Accept": "application/taxii+json;version=2.1", "Content-Type": "application/taxii+json;version=2.1"}
    roots = requests.get(base + "/taxii2/", headers=h, **kw).json()["api_roots"]
    root = urllib.request.urlparse(roots[0]).path
    coll = requests.get(base + root + "collections/", headers=h, **kw).json()["collections"][0]["id"]
    t = "2026-11-02T00:00:00.000Z"
    def report(uid, name, mark):
        return {"type": "report", "spec_version": "2.1", "id": "report--%s" % uid, "created": t, "modified": t,
                "name": name, "published": t, "object_refs": ["identity--11111111-2222-4333-8444-555555555599"],
                "object_marking_refs": [mark]}
    for obj, extra in ((report("11111111-2222-4333-8444-555555555511", "open-report",
                               "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"), {}),
                       (report("11111111-2222-4333-8444-555555555512", "red-report",
                               "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"),
                        {"Kizuna-Audience": "id:" + td + "mod/user/alice"})):
        r = requests.post(base + root + "collections/%s/objects/" % coll, headers=dict(h, **extra),
                          data=json.dumps({"objects": [obj]}), **kw)
        assert r.status_code == 202 and r.json()["success_count"] == 1, r.text
    # the operators' API under this policy: dave has no $SYS rule, so 403 with the rule to add,
    # and not one connection, serial, audit entry or token in the answer
    dkw = dict(verify=os.path.join(n.pki, "ca.pem"), cert=dave, timeout=10)
    for method, path in (("GET", "/api/v1/connections"), ("GET", "/api/v1/certificates"), ("GET", "/api/v1/audit"),
                         ("GET", "/api/v1/audit/verify"), ("POST", "/api/v1/tokens")):
        rr = requests.request(method, base + path, json={"id": td + "mod/user/x"}, **dkw)
        j = rr.json()
        assert rr.status_code == 403 and "$SYS/" in j["description"], (path, rr.text)
        assert set(j) == {"title", "description", "http_status"}, (path, j)
        assert "spiffe://kizuna.local/mod/user/alice" not in rr.text and "kzt1_" not in rr.text, rr.text
    # kizuna's match[audience]: the objects whose audience names alice
    q = requests.get(base + root + "collections/%s/objects/" % coll, headers=h,
                     params={"match[audience]": "id:" + td + "mod/user/alice"}, **kw).json()
    assert [o["name"] for o in q.get("objects", [])] == ["red-report"], q
    bad = requests.get(base + root + "collections/%s/objects/" % coll, headers=h, params={"match[audience]": "nobody"}, **kw)
    assert bad.status_code == 400 and "match[audience]" in bad.json()["description"], bad.text
    r = drive(n, dave[0], dave[1], pages=["picture"], live={"filter": "ops/#", "want": "open-" + token,
                                                             "absent": ["secret-" + token]}, publish=publish,
              objects=True)
    assert "open-report" in r["objects"] and "red-report" not in r["objects"], r["objects"]
    assert r["live"]["seen"], r["live"]
    assert not r["live"]["absent_seen"], "the uncleared person saw %r" % r["live"]["absent_seen"]
    pic = r["pages"]["picture"]["text"]
    assert "OPEN BUOY" in pic and "SECRET SUB" not in pic, pic[:800]
    # the cleared person sees the secret entity (so its absence above is the decision)
    r = drive(n, alice[0], alice[1], pages=["picture"], objects=True)
    assert "SECRET SUB" in r["pages"]["picture"]["text"]
    assert "open-report" in r["objects"] and "red-report" in r["objects"], r["objects"]
    n.stop()


run_tests([test_answers_at_root, test_every_page_loads_without_console_errors, test_record_published_over_mqtt_appears_live,
           test_ship_replayed_from_ais_appears_on_the_map, test_bundle_imported_and_filtered_on_the_sharing_page,
           test_task_created_and_cancelled_on_the_picture_page,
           test_revoke_from_the_console_closes_the_connection,
           test_lower_clearance_sees_no_labelled_record_or_entity])
