#!/usr/bin/python3
"""MQTT 5.0 end to end against a real `kizuna serve`, with paho-mqtt over mutual TLS."""
import time, struct, queue
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


def raw_subscribe(r, filt, opts=1, pid=1):
    body = struct.pack("!H", pid) + b"\x00" + s16(filt) + bytes([opts])
    r.send(bytes([0x82]) + varint(len(body)) + body)
    t, _, b = r.packet()
    assert t == 9 and b[-1] < 0x80, (t, b)


def raw_publish_fields(flags, body):
    """(topic, packet id, properties {id: raw bytes}, payload) of an MQTT 5 PUBLISH body."""
    n = struct.unpack("!H", body[:2])[0]
    topic, i = body[2:2 + n], 2 + n
    pid = None
    if flags & 6:
        pid, i = struct.unpack("!H", body[i:i + 2])[0], i + 2
    plen, mult = 0, 1
    while True:
        plen += (body[i] & 0x7F) * mult
        mult *= 128
        i += 1
        if not body[i - 1] & 0x80:
            break
    props, end = {}, i + plen
    while i < end:
        pid_, i = body[i], i + 1
        width = {0x23: 2, 0x01: 1, 0x02: 4, 0x0B: 1}.get(pid_)
        if width is None:  # strings, binary, pairs: skip by length
            if pid_ == 0x26:
                for _ in range(2):
                    i += 2 + struct.unpack("!H", body[i:i + 2])[0]
            else:
                i += 2 + struct.unpack("!H", body[i:i + 2])[0]
            continue
        props[pid_] = body[i:i + width]
        i += width
    return topic, pid, props, body[end:]


def test_shared_member_leaving_hands_over():
    """A member that leaves without acknowledging: its messages go to the other member."""
    r = node.raw()
    assert r.connect(b"shr-a")[0] == 2
    raw_subscribe(r, b"$share/h/handover/#")
    b = node.client("shr-b")
    b.sub("$share/h/handover/#", 1)
    p = node.client("shr-p")
    for i in range(6):
        p.pub("handover/t", b"%d" % i, 1)
    got_raw = []
    r.s.settimeout(1)
    while True:  # read, never acknowledge
        try:
            pkt = r.packet()
        except OSError:
            break
        if pkt is None:
            break
        got_raw.append(raw_publish_fields(pkt[1], pkt[2])[3])
    assert got_raw, "the raw member got no message; round robin broken?"
    r.s.close()
    seen = set()
    deadline = time.time() + 5
    while len(seen) < 6 and time.time() < deadline:
        try:
            seen.add(b.get(timeout=0.5).payload)
        except queue.Empty:
            pass
    assert seen == {b"%d" % i for i in range(6)}, (sorted(seen), got_raw)
    b.close(), p.close()


def test_outbound_topic_alias():
    """The node assigns topic aliases to a client that allows them (MQTT 5.0 §3.3.2.3.4)."""
    r = node.raw()
    props = b"\x22" + struct.pack("!H", 4)  # Topic Alias Maximum 4
    assert r.connect(b"ota", props=props)[0] == 2
    raw_subscribe(r, b"ota/#", opts=0)
    p = node.client("ota-p")
    for i in range(3):
        p.pub("ota/long/topic/name", b"%d" % i, 0)
    p.pub("ota/other", b"x", 0)
    seen = []
    for _ in range(4):
        t, flags, body = r.packet()
        assert t == 3
        seen.append(raw_publish_fields(flags, body))
    topic0, _, props0, _ = seen[0]
    assert topic0 == b"ota/long/topic/name" and 0x23 in props0, seen[0]
    alias = props0[0x23]
    assert 1 <= struct.unpack("!H", alias)[0] <= 4
    for topic, _, pr, payload in seen[1:3]:
        assert topic == b"" and pr.get(0x23) == alias, (topic, pr)  # alias only
    assert seen[3][0] == b"ota/other" and seen[3][2].get(0x23) != alias
    assert [s[3] for s in seen] == [b"0", b"1", b"2", b"x"]
    p.close()


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
    # §3.1.2.11.10: Authentication Data without an Authentication Method is a Protocol Error
    r = node.raw()
    t, f, body = r.connect(b"authdata", props=bytes([0x16]) + s16(b"secret"))
    assert t == 2 and body[1] == 0x82, body
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
           test_session_resume_with_queue, test_shared_subscription, test_shared_member_leaving_hands_over,
           test_outbound_topic_alias, test_topic_alias_and_properties,
           test_subscription_identifier_and_no_local, test_takeover, test_keepalive_expiry,
           test_auth_unsupported, test_payload_format_invalid, test_malformed_gets_reason,
           test_assigned_client_id, test_sigterm_disconnects_with_0x8b])
