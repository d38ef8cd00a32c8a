#!/usr/bin/python3
"""MQTT 5.0 end to end against a real `kizuna serve`, with paho-mqtt over mutual TLS."""
import time
from kzharness import *

node = Node()


def test_qos_0_1_2():
    s = node.client("s5")
    p = node.client("p5")
    for q in (0, 1, 2):
        assert s.sub("q/%d" % q, q) == [q] or s.sub("q/%d" % q, q)[0].value == q
    for q in (0, 1, 2):
        p.pub("q/%d" % q, b"m%d" % q, q)
        m = s.get()
        assert (m.topic, m.payload, m.qos) == ("q/%d" % q, b"m%d" % q, q), (m.topic, m.qos)
    s.close(); p.close()


def test_retained_and_delete():
    p = node.client("rp")
    p.pub("ret/a", b"kept", 1, retain=True)
    s = node.client("rs")
    s.sub("ret/#", 1)
    m = s.get()
    assert m.retain and m.payload == b"kept"
    p.pub("ret/a", b"", 1, retain=True)
    s2 = node.client("rs2")
    s2.sub("ret/#", 1)
    s2.none()
    # live messages lose the retain flag unless Retain As Published
    s3 = node.client("rs3")
    s3.sub("ret2/#", 1, rap=True)
    s.sub("ret2/#", 1)
    p.pub("ret2/x", b"live", 1, retain=True)
    assert bool(s3.get().retain)
    assert not s.get().retain
    for c in (p, s, s2, s3):
        c.close()


def test_will_with_delay():
    w = node.client("watcher")
    w.sub("wills/#", 1)
    props = Properties(PacketTypes.WILLMESSAGE)
    props.WillDelayInterval = 1
    cp = Properties(PacketTypes.CONNECT)
    cp.SessionExpiryInterval = 10
    d = node.client("dying", will=("wills/dying", b"bye", 1, False, props), props=cp)
    d.kill()
    w.none(0.5)  # delayed
    m = w.get(5)
    assert m.payload == b"bye"
    w.close()


def test_session_resume_with_queue():
    cp = Properties(PacketTypes.CONNECT)
    cp.SessionExpiryInterval = 60
    s = node.client("persist", props=cp)
    s.sub("sess/#", 1)
    s.close()
    p = node.client("sp")
    for i in range(5):
        p.pub("sess/x", b"%d" % i, 1)
    s = node.client("persist", clean=False, props=cp)
    assert s.flags["session present"] == 1
    got = [s.get().payload for _ in range(5)]
    assert got == [b"0", b"1", b"2", b"3", b"4"], got
    s.close(); p.close()


def test_shared_subscription():
    a = node.client("sha")
    b = node.client("shb")
    a.sub("$share/g/shared/#", 1)
    b.sub("$share/g/shared/#", 1)
    p = node.client("shp")
    for i in range(20):
        p.pub("shared/t", b"%d" % i, 1)
    time.sleep(0.5)
    na, nb = a.msgs.qsize(), b.msgs.qsize()
    assert na + nb == 20 and na > 0 and nb > 0, (na, nb)
    for c in (a, b, p):
        c.close()


def test_topic_alias_and_properties():
    s = node.client("tas")
    s.sub("alias/#", 1)
    p = node.client("tap")
    props = Properties(PacketTypes.PUBLISH)
    props.TopicAlias = 3
    props.UserProperty = [("k", "v1"), ("k", "v2")]
    props.ContentType = "text/plain"
    props.ResponseTopic = "reply/here"
    props.CorrelationData = b"\x01\x02"
    props.MessageExpiryInterval = 100
    p.pub("alias/one", b"first", 1, props=props)
    props2 = Properties(PacketTypes.PUBLISH)
    props2.TopicAlias = 3
    p.c._send_publish(p.c._mid_generate(), b"", b"second", 1, False, False, None, props2)
    m1, m2 = s.get(), s.get()
    assert m1.topic == "alias/one" and m2.topic == "alias/one", (m1.topic, m2.topic)
    assert m2.payload == b"second"
    mp = m1.properties
    assert mp.UserProperty == [("k", "v1"), ("k", "v2")], mp.UserProperty
    assert mp.ContentType == "text/plain" and mp.ResponseTopic == "reply/here"
    assert mp.CorrelationData == b"\x01\x02" and 98 <= mp.MessageExpiryInterval <= 100
    s.close(); p.close()


def test_subscription_identifier_and_no_local():
    c = node.client("sid")
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.SubscriptionIdentifier = 42
    c.sub("sid/#", 1, props=sp)
    c.sub("nl/#", 1, no_local=True)
    c.pub("sid/x", b"a", 1)
    m = c.get()
    assert m.properties.SubscriptionIdentifier == [42]
    c.pub("nl/x", b"self", 1)
    c.none()
    c.close()


def test_takeover():
    a = node.client("same")
    b = node.client("same")
    rc = a.disc.get(timeout=5)
    assert rc == 142 or getattr(rc, "value", None) == 142 or str(rc) == "Session taken over", rc
    b.close()


def test_keepalive_expiry():
    r = node.raw()
    t, f, body = r.connect(b"ka", keepalive=1)
    assert t == 2 and body[1] == 0
    start = time.time()
    p = r.packet()  # silent client: DISCONNECT 0x8D after 1.5 s
    assert p and p[0] == 14 and p[2][0] == 0x8D, p
    assert 1.2 <= time.time() - start <= 4
    assert r.closed()


def test_auth_unsupported():
    r = node.raw()
    props = bytes([0x15]) + s16(b"SCRAM-SHA-1")
    t, f, body = r.connect(b"auth", props=props)
    assert t == 2 and body[1] == 0x8C, body
    r = node.raw()
    r.connect(b"auth2")
    r.send(bytes([0xF0, 0]))
    t, f, body = r.packet()
    assert t == 14 and body[0] == 0x82


def test_payload_format_invalid():
    c = node.client("pfi")
    props = Properties(PacketTypes.PUBLISH)
    props.PayloadFormatIndicator = 1
    info = c.c.publish("pfi/x", b"\xff\xfe", 1, properties=props)
    info.wait_for_publish(5)
    c.close()
    assert "0x99" in node.logtext()


def test_malformed_gets_reason():
    r = node.raw()
    r.connect(b"mal")
    r.send(bytes([0x30, 0x04, 0, 1, 0xFF, 0]))  # topic not UTF-8
    t, f, body = r.packet()
    assert t == 14 and body[0] == 0x81, body
    assert r.closed()


def test_assigned_client_id():
    c = node.client("")
    assert c.props.AssignedClientIdentifier.startswith("kz-")
    c.close()


def test_sigterm_disconnects_with_0x8b():
    c = node.client("last")
    rc = node.stop()
    got = c.disc.get(timeout=10)
    assert rc == 0, rc
    assert "0x8B" in node.logtext()


run_tests([test_qos_0_1_2, test_retained_and_delete, test_will_with_delay,
           test_session_resume_with_queue, test_shared_subscription, test_topic_alias_and_properties,
           test_subscription_identifier_and_no_local, test_takeover, test_keepalive_expiry,
           test_auth_unsupported, test_payload_format_invalid, test_malformed_gets_reason,
           test_assigned_client_id, test_sigterm_disconnects_with_0x8b])
