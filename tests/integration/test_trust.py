"""Trust defects found by outside testing (issue 16), each against a real node with real
clients: sessions bound to the identity that created them, every send re-decided (resends
with DUP, a removed subscription's backlog, a will when it fires), reserved topics on every
path that creates a record. Each test has a control that shows the path it guards is live."""
import os, shutil, struct, subprocess, tempfile, time
from kzharness import Node, run_tests, KIZUNA, s16, varint, tmpdir
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "data", "policy")
TD = "spiffe://kizuna.local/"
node = None
certs = {}
REG0 = None


def setup():
    global node, REG0
    tmp = tmpdir("kz-trust-")
    shutil.copy(os.path.join(FIX, "kizuna.policy"), tmp)
    shutil.copy(os.path.join(FIX, "identities"), tmp)
    node = Node("policy.file = %s/kizuna.policy\npolicy.registry = %s/identities\n" % (tmp, tmp))
    node.poldir = tmp
    REG0 = open(os.path.join(tmp, "identities")).read()
    for who in ["mod/user/alice", "mod/user/dave", "mod/sensor/radar1", "nisc/user/carol"]:
        certs[who.split("/")[-1]] = node.issue(who.replace("/", "-"), spiffe=TD + who)


def cli(*args, ok=True):
    r = subprocess.run([KIZUNA] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if ok and r.returncode:
        raise AssertionError("kizuna %s: %d %s" % (" ".join(args), r.returncode, r.stderr))
    return r


def registry(old=None, new=None):
    """Rewrites the registry (old -> new; no arguments: the fixture) and reloads the node."""
    reg = os.path.join(node.poldir, "identities")
    text = REG0 if old is None else REG0.replace(old, new)
    assert old is None or text != REG0
    open(reg, "w").write(text)
    r = cli("policy", "reload", "--data", node.data, "--policy", node.poldir + "/kizuna.policy", "--registry", reg)
    assert "policy reloaded" in r.stdout, r.stdout
    time.sleep(0.3)  # a few ticks: the shards re-evaluate their sessions


def client(who, cid=None, clean=True, props=None, will=None):
    return node.client(cid or who, cert=certs[who], clean=clean, props=props, will=will)


def labelled(label):
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = [("kz-label", label)]
    return p


EXPIRY = b"\x11" + struct.pack("!I", 300)  # Session Expiry Interval 300 s


def raw(who, cid, clean=True, v5=True, props=EXPIRY, will=None):
    r = node.raw(cert=certs[who])
    r.ack = r.connect(cid.encode(), v5=v5, clean=clean, props=props if v5 else b"", will=will)
    return r


def connack_rc(ack):
    assert ack and ack[0] == 2, ack
    return ack[2][1]


def subscribe(r, flt, qos=1, pid=1):
    body = struct.pack("!H", pid) + b"\x00" + s16(flt.encode()) + bytes([qos])
    r.send(b"\x82" + varint(len(body)) + body)
    p = r.packet()
    assert p and p[0] == 9, p
    return p[2][3:]


def publishes(r, wait=1.0):
    """The PUBLISH packets that arrive within wait: (dup, qos, pid, topic, payload), unacknowledged."""
    got = []
    r.s.settimeout(wait)
    try:
        while True:
            p = r.packet()
            if p is None:
                break
            if p[0] != 3:
                continue
            flags, b = p[1], p[2]
            tl = struct.unpack("!H", b[:2])[0]
            topic, i = b[2:2 + tl].decode(), 2 + tl
            qos, pid = (flags >> 1) & 3, 0
            if qos:
                pid = struct.unpack("!H", b[i:i + 2])[0]
                i += 2
            n, mult = 0, 1
            while True:  # properties length
                n += (b[i] & 0x7F) * mult
                mult *= 128
                i += 1
                if not b[i - 1] & 0x80:
                    break
            got.append((bool(flags & 8), qos, pid, topic, b[i + n:]))
    except (TimeoutError, OSError):
        pass
    r.s.settimeout(10)
    return got


def audit(action):
    return cli("audit", "show", "--data", node.data, "--action", action).stdout


def test_session_bound_to_identity():
    alice = client("alice", cid="sess-A", clean=False, props=_expiry_props())
    assert alice.sub("cti/#", 1)[0].value == 1
    # another identity, same client id: refused, whatever clean start says
    for clean in (False, True):
        r = raw("dave", "sess-A", clean=clean)
        assert connack_rc(r.ack) == 0x85, r.ack
        assert b"another identity" in r.ack[2], r.ack
        assert r.closed()
    r = raw("dave", "sess-A", v5=False, clean=False)
    assert r.ack[2][1] == 2, r.ack  # 3.1.1: identifier rejected
    # the owner's connection and session were left untouched
    dave = client("dave")
    dave.pub("cti/x", b"still yours", 1, props=labelled("class=unclassified;tlp=green"))
    assert alice.get().payload == b"still yours"
    assert alice.disc.empty()
    alice.close()
    r = raw("dave", "sess-A", clean=False)
    assert connack_rc(r.ack) == 0x85
    # the owner comes back to its session
    r = raw("alice", "sess-A", clean=False)
    assert connack_rc(r.ack) == 0 and r.ack[2][0] & 1, "session present for its owner"
    r.s.close()
    assert "belongs to a session of another identity" in audit("connect")
    dave.close()


def _expiry_props():
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = 300
    return p


def test_will_on_reserved_topics():
    coll = "5b8b0e6a-1c9d-4e7e-9f39-6c1f0b0a0d11"
    for topic in ["$taxii/%s/indicator/6d9b1f7e-4b0a-4f7e-8f66-1f0b0a0d1122/1" % coll,
                  "$taxii-del/%s/indicator/6d9b1f7e-4b0a-4f7e-8f66-1f0b0a0d1122/1" % coll,
                  "$SYS/broker/x", "$other/x"]:
        r = raw("alice", "will-res", will=(topic.encode(), b'{"type":"indicator"}', b""))
        assert connack_rc(r.ack) == 0x87, (topic, r.ack)
        assert b"will" in r.ack[2], r.ack
        r = raw("alice", "will-res", v5=False, will=(topic.encode(), b"x", b""))
        assert r.ack[2][1] == 5, (topic, r.ack)  # 3.1.1: not authorized
    # control: a will on an ordinary topic is accepted
    r = raw("alice", "will-ok", will=(b"cti/will", b"bye", b""))
    assert connack_rc(r.ack) == 0
    r.s.close()
    # PUBLISH on any '$' topic is refused too (MQTT 5.0 4.7.2)
    a = client("alice")
    info = a.c.publish("$other/x", b"x", 1)
    info.wait_for_publish(5)
    a.close()
    assert "reserved for the server" in audit("publish")


def test_resend_is_decided_again():
    registry()
    r = raw("dave", "dave-resend", clean=True)
    assert connack_rc(r.ack) == 0
    assert subscribe(r, "ops/#") == b"\x01"
    alice = client("alice")
    alice.pub("ops/r", b"low", 1, props=labelled("class=restricted"))
    alice.pub("ops/r", b"high", 1, props=labelled("class=confidential"))
    got = publishes(r)
    assert [g[4] for g in got] == [b"low", b"high"], got  # not acknowledged
    r.s.close()
    # dave's clearance drops while the two are in flight; his subscription stays allowed
    registry("mod/user/dave      org=mod nation=jpn clearance=confidential",
             "mod/user/dave      org=mod nation=jpn clearance=restricted")
    r = raw("dave", "dave-resend", clean=False)
    assert connack_rc(r.ack) == 0 and r.ack[2][0] & 1
    got = publishes(r)
    assert [(g[0], g[4]) for g in got] == [(True, b"low")], got  # the resend is decided again
    r.s.close()
    alice.close()
    assert "clearance below" in audit("deliver")
    registry()


def test_removed_subscription_backlog():
    registry()
    dave = client("dave", cid="dave-backlog", clean=False, props=_expiry_props())
    assert dave.sub("ops/#", 1)[0].value == 1
    dave.close()
    alice = client("alice")
    alice.pub("ops/q", b"queued-1", 1, props=labelled("class=restricted"))
    # control: the queued message reaches the session when nothing changed
    r = raw("dave", "dave-backlog", clean=False)
    assert [g[4] for g in publishes(r)] == [b"queued-1"]
    r.s.close()
    time.sleep(0.2)
    alice.pub("ops/q", b"queued-2", 1, props=labelled("class=restricted"))
    time.sleep(0.2)
    # dave loses the operator role: ops/# is no longer his to read
    registry("mod/user/dave      org=mod nation=jpn clearance=confidential roles=operator",
             "mod/user/dave      org=mod nation=jpn clearance=confidential")
    r = raw("dave", "dave-backlog", clean=False)
    assert connack_rc(r.ack) == 0
    got = publishes(r)
    assert all(g[4] != b"queued-2" for g in got), got
    r.s.close()
    alice.close()
    registry()


def test_will_is_decided_when_it_fires():
    registry()
    dave = client("dave")
    assert dave.sub("ops/#", 1)[0].value == 1
    assert dave.sub("sensors/#", 1)[0].value == 1
    radar = raw("radar1", "radar-will", will=(b"sensors/r1/will", b"radar gone", b""))
    alice = raw("alice", "alice-will", will=(b"ops/will", b"alice gone", b""))
    assert connack_rc(radar.ack) == 0 and connack_rc(alice.ack) == 0
    # alice loses the operator role after her CONNECT: her will may not go to ops/ any more
    registry("mod/user/alice     org=mod nation=jpn clearance=secret caveats=cyber roles=operator",
             "mod/user/alice     org=mod nation=jpn clearance=secret caveats=cyber")
    radar.s.close()  # control: an allowed will fires
    alice.s.close()
    got = []
    try:
        while True:
            got.append(dave.get(timeout=1.5).payload)
    except Exception:
        pass
    assert got == [b"radar gone"], got
    assert "will withheld" in audit("publish")
    dave.close()
    registry()


def test_query_as_applies_subscribe_rules():
    registry()
    alice = client("alice")
    alice.pub("ops/q/read", b"ops record", 1, props=labelled("class=restricted"))
    alice.close()
    pol = ["--policy", node.poldir + "/kizuna.policy", "--registry", node.poldir + "/identities"]

    def q(who):
        for _ in range(50):  # the node indexes in the background
            r = cli("query", "--data", node.data, "-t", "ops/q/#", "--format", "ndjson", "--as", TD + who, *pol)
            if "not indexed yet" not in r.stderr:
                return r
            time.sleep(0.1)
        return r
    r = q("mod/user/dave")  # control: an operator of mod reads it
    assert "ops record" in r.stdout, (r.stdout, r.stderr)
    # bob (meti, confidential) dominates the label but may not subscribe to ops/#
    r = q("meti/user/bob")
    assert r.stdout.strip() == "" and "withheld" in r.stderr, (r.stdout, r.stderr)
    assert "subscribe to the record's topic" in audit("query")
    r = cli("query", "--data", node.data, "-t", "demo/#/x", ok=False)
    assert r.returncode == 2 and "'#' must be the last level" in r.stderr, r.stderr


def test_lookalike_user_properties():
    registry()
    carol = client("carol")
    assert carol.sub("cti/#", 1)[0].value == 1
    alice = client("alice")
    for key in ("KZ-LABEL", "kz-label ", " Kz-Label", "KZ-replay-since"):
        p = labelled("class=unclassified;tlp=green")
        p.UserProperty = [(key, "class=unclassified")]
        info = alice.c.publish("cti/look", b"x", 1, properties=p)
        info.wait_for_publish(5)
    carol.none(0.8)  # every one of them was refused (PUBACK 0x83 with the reason)
    assert "looks like one of the node's" in audit("publish")
    # control: an ordinary property travels, beside the node's canonical kz-label
    p = labelled("class=unclassified;tlp=green")  # paho appends to UserProperty
    p.UserProperty = [("note", "x")]
    alice.pub("cti/look", b"ok", 1, props=p)
    m = carol.get()
    props = m.properties.UserProperty
    assert ("note", "x") in props and [k for k, v in props if k.lower().strip() == "kz-label"] == ["kz-label"], props
    alice.close(); carol.close()


def taxii_session(n, cert):
    import requests
    for v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(v, None)
    x = requests.Session()
    x.verify = os.path.join(n.pki, "ca.pem")
    x.cert = cert
    x.headers["Accept"] = TAXII
    return x


TAXII = "application/taxii+json;version=2.1"


def indicator(marking=None):
    import uuid
    o = {"type": "indicator", "spec_version": "2.1", "id": "indicator--%s" % uuid.uuid4(),
         "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z", "name": "t",
         "pattern": "[ipv4-addr:value = '198.51.100.7']", "pattern_type": "stix", "valid_from": "2024-01-01T00:00:00Z"}
    if marking:
        o["object_marking_refs"] = [marking]
    return o


def taxii_node(extra=""):
    import json, uuid
    from kzharness import free_port
    d = tmpdir("kz-trust-taxii-")
    cid = str(uuid.uuid4())
    with open(os.path.join(d, "collections.json"), "w") as f:
        json.dump([{"id": cid, "title": "t", "allow_custom": True}], f)
    hp = free_port()
    n = Node("https.listen = 127.0.0.1:%d\ntaxii.collections = %s\n%s" % (hp, os.path.join(d, "collections.json"), extra))
    n.hport, n.cid, n.tdir = hp, cid, d
    n.objs = "https://localhost:%d/taxii2/api/collections/%s/objects/" % (hp, cid)
    return n


def test_pre_policy_taxii_objects_carry_the_default_label():
    n = taxii_node()
    admin = (os.path.join(n.pki, "admin.pem"), os.path.join(n.pki, "admin.key"))
    ind = indicator()
    import json
    r = taxii_session(n, admin).post(n.objs, data=json.dumps({"objects": [ind]}), headers={"Content-Type": TAXII})
    assert r.status_code == 202 and r.json()["success_count"] == 1, r.text
    assert n.stop() == 0
    d = n.tdir
    with open(os.path.join(d, "kizuna.policy"), "w") as f:
        f.write("policy test\nversion 1\nlevels unclassified confidential secret\n"
                "category rel permissive attr=nation jpn usa\n"
                "default-label class=confidential;rel=jpn\n"
                "allow connect where kind=user\n"
                "allow subscribe $taxii/%s/# where org=mod,acme\n" % n.cid)
    with open(os.path.join(d, "identities"), "w") as f:
        f.write("spiffe://kizuna.local/mod/user/alice org=mod nation=jpn clearance=secret\n"
                "spiffe://kizuna.local/acme/user/erin org=acme nation=usa clearance=secret\n")
    with open(n.cfg, "a") as f:
        f.write("policy.file = %s/kizuna.policy\npolicy.registry = %s/identities\n" % (d, d))
    n.log = open(n.log.name, "a")
    n.start()
    alice = n.issue("alice", "spiffe://kizuna.local/mod/user/alice")
    erin = n.issue("erin", "spiffe://kizuna.local/acme/user/erin")
    for _ in range(50):  # HTTPS opens after the TAXII index is rebuilt
        try:
            r = taxii_session(n, alice).get(n.objs + ind["id"] + "/")
            break
        except Exception:
            time.sleep(0.1)
    assert r.status_code == 200, (r.status_code, r.text)  # control: the default label is alice's to read
    assert taxii_session(n, erin).get(n.objs + ind["id"] + "/").status_code == 404  # rel=jpn: not erin's
    assert taxii_session(n, erin).get(n.objs).json() == {"more": False}
    n.shutdown()


def test_taxii_audiences_are_canonical():
    import json
    n = taxii_node()
    amber = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
    who = {k: n.issue(k, "spiffe://kizuna.local/%s/user/%s" % (o, k)) for k, o in
           (("alice", "mod"), ("bob", "meti"), ("erin", "acme"))}
    ind = indicator(amber)
    r = taxii_session(n, who["alice"]).post(n.objs, data=json.dumps({"objects": [ind]}),
                                            headers={"Content-Type": TAXII, "Kizuna-Audience": "ORG:METI, org:meti,org:Meti"})
    assert r.status_code == 202 and r.json()["success_count"] == 1, r.text
    assert taxii_session(n, who["bob"]).get(n.objs + ind["id"] + "/").status_code == 200
    assert taxii_session(n, who["erin"]).get(n.objs + ind["id"] + "/").status_code == 404
    r = taxii_session(n, who["alice"]).post(n.objs, data=json.dumps({"objects": [indicator(amber)]}),
                                            headers={"Content-Type": TAXII, "Kizuna-Audience": "team:x"})
    assert r.json()["failure_count"] == 1 and "Kizuna-Audience" in r.json()["failures"][0]["message"], r.text
    n.shutdown()


if __name__ == "__main__":
    setup()
    run_tests([test_session_bound_to_identity, test_will_on_reserved_topics, test_resend_is_decided_again,
               test_removed_subscription_backlog, test_will_is_decided_when_it_fires,
               test_query_as_applies_subscribe_rules, test_lookalike_user_properties,
               test_pre_policy_taxii_objects_carry_the_default_label, test_taxii_audiences_are_canonical])
