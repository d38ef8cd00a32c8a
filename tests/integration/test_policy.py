"""Labels and policy on a real node (docs/POLICY.md): identities of four organisations and
several clearances, over real paho clients (MQTT 5 and 3.1.1). Proves that no record reaches
a subject that does not dominate its label through live delivery, retained messages, session
queues, replay or query; that publishers cannot label above their clearance or outside their
releasability; that reloads re-evaluate subscriptions at once and a bad policy is refused;
and that the decisions are in the audit log with labels and the policy version."""
import json, os, shutil, subprocess, sys, time
from kzharness import Node, run_tests, KIZUNA, tmpdir
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "data", "policy")
TD = "spiffe://kizuna.local/"

node = None
certs = {}


def setup():
    global node
    tmp = tmpdir("kz-pol-")
    shutil.copy(os.path.join(FIX, "kizuna.policy"), tmp)
    shutil.copy(os.path.join(FIX, "identities"), tmp)
    node = Node("policy.file = %s/kizuna.policy\npolicy.registry = %s/identities\n"
                "policy.audit_summary_ms = 200\naudit.checkpoint_ms = 200\n" % (tmp, tmp))
    node.poldir = tmp
    for who in ["mod/user/alice", "mod/user/dave", "mod/sensor/radar1", "meti/user/bob",
                "nisc/user/carol", "acme/user/erin", "mod/user/nobody"]:
        certs[who.split("/")[-1]] = node.issue(who.replace("/", "-"), spiffe=TD + who)


def client(who, cid=None, v5=True, clean=True, props=None):
    return node.client(cid or who, v5=v5, cert=certs[who], clean=clean, props=props)


def labelled(label, **extra):
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = [("kz-label", label)]
    return p


def user_props(m):
    return dict(getattr(m.properties, "UserProperty", []) or [])


def drain(c, wait=0.6):
    got = []
    while True:
        try:
            got.append(c.get(timeout=wait))
        except Exception:
            return got


def cli(*args, ok=True):
    r = subprocess.run([KIZUNA] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if ok and r.returncode:
        raise AssertionError("kizuna %s: %d %s" % (" ".join(args), r.returncode, r.stderr))
    return r


def test_subscribe_decisions():
    erin = client("erin")
    assert erin.sub("sensors/#", 1)[0].value == 0x87, "acme may not subscribe to sensors"
    assert "subscribe" in (getattr(erin.suback_props, "ReasonString", "") or "")
    assert erin.sub("cti/#", 1)[0].value == 1
    bob = client("bob")
    assert bob.sub("#", 1)[0].value == 0x87
    assert bob.sub("$share/g/sensors/+", 1)[0].value == 0x87, "shared subscriptions are checked on the filter"
    erin.close(); bob.close()


def test_live_delivery_and_default_labels():
    alice, carol, dave = client("alice"), client("carol"), client("dave")
    assert alice.sub("sensors/#", 1)[0].value == 1
    assert dave.sub("sensors/#", 1)[0].value == 1
    assert carol.sub("sensors/#", 1)[0].value == 1  # an auditor may subscribe to everything
    radar = client("radar1", v5=False)  # MQTT 3.1.1: the rule's default label
    radar.pub("sensors/r1/track", b"t1", 1)
    m = alice.get()
    assert m.payload == b"t1"
    assert user_props(m)["kz-label"] == "policy=jp-mod;class=restricted;rel=jpn;relorg=mod", user_props(m)
    assert dave.get().payload == b"t1"
    carol.none()  # nisc is not in relorg=mod: withheld
    radar.close()
    # A labelled MQTT 5 publish: secret + cyber caveat, released to nisc too
    alice.sub("ops/#", 1)
    carol.sub("ops/#", 1)
    dave.sub("ops/#", 1)
    alice.pub("ops/brief", b"s1", 1, props=labelled("class=secret;caveat=cyber;relorg=mod,nisc"))
    m = carol.get()
    assert m.payload == b"s1"
    assert user_props(m)["kz-label"] == "policy=jp-mod;class=secret;caveat=cyber;relorg=mod,nisc"
    dave.none()  # confidential, no caveat
    for c in (alice, carol, dave):
        c.close()


def test_publisher_cannot_overlabel():
    dave = client("dave")
    acks = []
    dave.c.on_publish = lambda c, u, mid, rc=None, p=None: acks.append((mid, rc, p))
    # Above his clearance.
    info = dave.c.publish("ops/x", b"x", 1, properties=labelled("class=secret"))
    info.wait_for_publish(5)
    time.sleep(0.3)
    # Outside his releasability (nation usa only).
    dave.c.publish("ops/x", b"x", 1, properties=labelled("class=restricted;rel=usa")).wait_for_publish(5)
    # Malformed.
    dave.c.publish("ops/x", b"x", 1, properties=labelled("class=restricted;tlp=white")).wait_for_publish(5)
    # Not allowed on the topic at all.
    dave.c.publish("cti/x", b"x", 1).wait_for_publish(5)
    time.sleep(0.3)
    dave.close()
    log = node.logtext()
    assert "label above the publisher's clearance" in log, log[-3000:]
    assert "outside the publisher's own categories or releasability" in log
    assert "TLP 2.0 has no WHITE" in log
    r = cli("audit", "show", "--data", node.data, "--action", "publish", "--decision", "deny")
    assert r.stdout.count("mod/user/dave") >= 3, r.stdout
    assert '"policy":"fixture-1/' in r.stdout


def test_retained_and_session_queue_and_replay_and_query():
    alice = client("alice")
    alice.pub("ops/state", b"secret-state", 1, retain=True, props=labelled("class=secret;caveat=cyber"))
    alice.pub("ops/open", b"open-state", 1, retain=True, props=labelled("class=restricted"))
    dave = client("dave")
    dave.sub("ops/#", 1)
    got = sorted(m.payload for m in drain(dave))
    assert got == [b"open-state"], got
    dave.close()
    carol = client("carol")
    carol.sub("ops/#", 1)
    got = sorted(m.payload for m in drain(carol))
    assert b"secret-state" in got and b"open-state" in got, got
    carol.close()
    # Session queue: dave offline with a persistent session.
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 300
    d = client("dave", cid="dave-persist", clean=False, props=props)
    d.sub("ops/q/#", 1)
    d.close()
    alice.pub("ops/q/1", b"q-secret", 1, props=labelled("class=secret;caveat=cyber"))
    alice.pub("ops/q/2", b"q-open", 1, props=labelled("class=confidential"))
    d = client("dave", cid="dave-persist", clean=False, props=props)
    got = [m.payload for m in drain(d)]
    assert got == [b"q-open"], got
    d.close()
    # Replay from the log.
    r = client("dave", cid="dave-replay")
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.UserProperty = [("kz-replay-since", "2020-01-01T00:00:00Z")]
    assert r.sub("ops/#", 1, props=sp)[0].value == 1
    got = sorted(m.payload for m in drain(r, 1.0))
    assert b"q-open" in got and b"open-state" in got, got
    assert b"q-secret" not in got and b"secret-state" not in got and b"s1" not in got, got
    r.close()
    alice.close()
    # Query: as dave, as carol, and without a subject (the operator's view).
    time.sleep(1.5)  # the index follows the log
    pol = ["--policy", node.poldir + "/kizuna.policy", "--registry", node.poldir + "/identities"]
    q = cli("query", "--data", node.data, "--topic", "ops/#", "--format", "ndjson", "--as", TD + "mod/user/dave", *pol)
    assert "q-open" in q.stdout and "q-secret" not in q.stdout and "secret-state" not in q.stdout, q.stdout
    assert "withheld" in q.stderr
    q = cli("query", "--data", node.data, "--topic", "ops/#", "--format", "ndjson", "--as", TD + "nisc/user/carol", *pol)
    assert "q-secret" in q.stdout and "secret-state" in q.stdout
    q = cli("query", "--data", node.data, "--topic", "ops/#", "--format", "ndjson", "--limit", "1",
            "--as", TD + "mod/user/dave", *pol)
    assert len(q.stdout.strip().splitlines()) == 1
    q = cli("query", "--data", node.data, "--topic", "ops/q/1", "--format", "ndjson")
    assert '"label":"policy=jp-mod;class=secret;caveat=cyber"' in q.stdout, q.stdout
    q = cli("query", "--data", node.data, "--as", TD + "mod/user/dave", ok=False)
    assert q.returncode == 2 and "policy" in q.stderr
    # every query on behalf of a subject is in the node's audit log (written beside the
    # running node, one chain): the withheld records one by one, the returned ones counted
    a = [json.loads(l) for l in cli("audit", "show", "--data", node.data, "--action", "query").stdout.splitlines()]
    dave = [e for e in a if e["subject"] == TD + "mod/user/dave"]
    assert any(e["decision"] == "deny" and e["label"].startswith("policy=jp-mod;class=secret") for e in dave), dave
    assert any(e["decision"] == "allow" and "records returned" in e["reason"] and e["resource"].startswith("topic=ops/#")
               for e in dave), dave
    assert not any(e["decision"] == "deny" for e in a if e["subject"] == TD + "nisc/user/carol")
    alice = client("alice")  # the node writes after the queries: the chain goes on
    alice.close()
    time.sleep(0.5)
    assert cli("audit", "verify", "--data", node.data).returncode == 0


def test_unknown_identity_sees_nothing():
    n = client("nobody")  # connects (kind=user) but the registry does not know it
    assert n.sub("cti/#", 1)[0].value == 0x87
    n.close()


def test_reload():
    carol = client("carol")
    carol.sub("#", 1)
    drain(carol)  # the retained messages
    alice = client("alice")
    alice.pub("ops/r", b"before", 1, props=labelled("class=secret;caveat=cyber"))
    assert carol.get().payload == b"before"
    # Lower carol's clearance and take away the auditor rule: her '#' goes at once.
    reg = os.path.join(node.poldir, "identities")
    text = open(reg).read().replace("org=nisc nation=jpn clearance=secret caveats=cyber,crypto roles=auditor",
                                    "org=nisc nation=jpn clearance=restricted caveats=cyber,crypto")
    open(reg, "w").write(text)
    r = cli("policy", "reload", "--data", node.data, "--policy", node.poldir + "/kizuna.policy", "--registry", reg)
    assert "policy reloaded" in r.stdout, r.stdout
    time.sleep(0.5)
    alice.pub("ops/r", b"after", 1, props=labelled("class=restricted;relorg=nisc"))
    carol.none(0.8)  # the subscription was removed (and ops/# is not hers)
    assert "removed by a policy reload" in cli("audit", "show", "--data", node.data, "--action", "subscribe").stdout
    # A policy that does not parse is refused; the running one stays.
    pf = os.path.join(node.poldir, "kizuna.policy")
    good = open(pf).read()
    open(pf, "w").write(good + "allow publish bad/#/x\n")
    r = cli("policy", "reload", "--data", node.data, "--policy", pf, "--registry", reg, ok=False)
    assert r.returncode == 1 and "kizuna.policy:" in r.stderr and "bad topic filter" in r.stderr, r.stderr
    os.kill(node.proc.pid, __import__("signal").SIGHUP)  # the node refuses it too
    time.sleep(0.5)
    assert "policy not reloaded" in node.logtext()
    open(pf, "w").write(good)
    d = client("dave")
    d.sub("ops/#", 1)
    drain(d)
    alice.pub("ops/r", b"still", 1, props=labelled("class=restricted"))
    assert d.get().payload == b"still"
    for c in (carol, alice, d):
        c.close()


def test_signed_policy():
    """policy.signing_key: the files must carry valid ML-DSA-65 signatures (kizuna policy sign)."""
    d = tmpdir("kz-polsig-")
    for f in ("kizuna.policy", "identities"):
        shutil.copy(os.path.join(FIX, f), d)
    cli("policy", "keygen", "--out", d)
    pf, rf, pub, key = (os.path.join(d, x) for x in ("kizuna.policy", "identities", "policy-signing.pub",
                                                      "policy-signing.key"))
    extra = "policy.file = %s\npolicy.registry = %s\npolicy.signing_key = %s\n" % (pf, rf, pub)
    conf = os.path.join(d, "k.conf")
    open(conf, "w").write("mqtt.listen = 127.0.0.1:1\n" + extra)
    # unsigned: refused by check (and a node would not start)
    r = cli("policy", "check", "--config", conf, ok=False)
    assert r.returncode == 1 and "no signed manifest" in r.stderr, r.stderr
    r = subprocess.run([KIZUNA, "serve", "--config", conf, "--data", os.path.join(d, "var")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "kizuna.policy.manifest" in r.stderr, r.stderr
    cli("policy", "sign", "--key", key, pf, rf)
    assert "policy jp-mod" in cli("policy", "check", "--config", conf).stdout
    good = (open(pf).read(), open(rf).read(), open(pf + ".manifest").read(), open(pf + ".manifest.sig").read())
    n2 = Node(extra)
    # a change after signing is refused on reload; the signed version stays in force
    open(pf, "a").write("# edited after signing\n")
    r = cli("policy", "reload", "--config", n2.cfg, "--data", n2.data, ok=False)
    assert r.returncode == 1 and "is not the policy its signed manifest" in r.stderr, r.stderr
    os.kill(n2.proc.pid, __import__("signal").SIGHUP)
    time.sleep(0.5)
    assert "is not the policy its signed manifest" in n2.logtext()
    cli("policy", "sign", "--key", key, pf, rf)  # sequence 2
    cli("policy", "reload", "--config", n2.cfg, "--data", n2.data)
    # a mixed pair: this registry with the manifest of another version
    open(rf, "a").write("# another version\n")
    r = cli("policy", "reload", "--config", n2.cfg, "--data", n2.data, ok=False)
    assert r.returncode == 1 and "a policy and a registry from different versions" in r.stderr, r.stderr
    # a rollback: the older, validly signed pair (sequence 1) put back
    for path, text in zip((pf, rf, pf + ".manifest", pf + ".manifest.sig"), good):
        open(path, "w").write(text)
    r = cli("policy", "reload", "--config", n2.cfg, "--data", n2.data, ok=False)
    assert r.returncode == 1 and "sequence 1 is older than 2" in r.stderr, r.stderr
    os.kill(n2.proc.pid, __import__("signal").SIGHUP)
    time.sleep(0.5)
    assert "rollback" in cli("audit", "show", "--data", n2.data, "--action", "policy").stdout
    n2.stop()
    # an explicit policy without a signing key, on a node that is not on its own development PKI
    d3 = tmpdir("kz-polsig3-")
    cli("ca", "init", "--data", os.path.join(d3, "var"))
    os.unlink(os.path.join(d3, "var", "pki", "ca.key"))  # the CA key kept elsewhere: not development
    conf3 = os.path.join(d3, "k.conf")
    open(conf3, "w").write("mqtt.listen = 127.0.0.1:1\npolicy.file = %s\npolicy.registry = %s\n" % (
        os.path.join(FIX, "kizuna.policy"), os.path.join(FIX, "identities")))
    r = subprocess.run([KIZUNA, "serve", "--config", conf3, "--data", os.path.join(d3, "var")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "policy.signing_key is required outside development mode" in r.stderr, r.stderr


def test_audit():
    time.sleep(0.5)
    r = cli("audit", "show", "--data", node.data, "--action", "deliver", "--decision", "deny")
    assert '"label":"policy=jp-mod;class=secret;caveat=cyber' in r.stdout, r.stdout[-2000:]
    assert "nisc/user/carol" in r.stdout or "mod/user/dave" in r.stdout
    r = cli("audit", "show", "--data", node.data, "--action", "deliver", "--decision", "allow")
    assert "deliveries allowed" in r.stdout and '"count":' in r.stdout, r.stdout[-2000:]
    r = cli("audit", "show", "--data", node.data, "--action", "publish", "--decision", "allow")
    assert "publishes allowed" in r.stdout
    node.stop()
    r = cli("audit", "verify", "--data", node.data)
    assert r.returncode == 0


if __name__ == "__main__":
    setup()
    run_tests([test_subscribe_decisions, test_live_delivery_and_default_labels, test_publisher_cannot_overlabel,
               test_retained_and_session_queue_and_replay_and_query, test_unknown_identity_sees_nothing,
               test_signed_policy,
               test_reload, test_audit])
