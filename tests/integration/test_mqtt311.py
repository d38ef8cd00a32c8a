#!/usr/bin/python3
"""MQTT 3.1.1 end to end against a real `kizuna serve`, with paho-mqtt over mutual TLS."""
from kzharness import *

node = Node()


def test_qos_and_retained():
    s = node.client("s3", v5=False)
    p = node.client("p3", v5=False)
    p.pub("r311/x", b"ret", 1, retain=True)
    assert s.sub("r311/#", 2) == (2,)
    m = s.get()
    assert m.retain and m.payload == b"ret"
    for q in (0, 1, 2):
        p.pub("r311/q", b"%d" % q, q)
        m = s.get()
        assert m.qos == q and not m.retain
    s.close(); p.close()


def test_persistent_session():
    s = node.client("keep311", v5=False, clean=False)
    s.sub("k311/#", 1)
    s.close()
    p = node.client("kp311", v5=False)
    p.pub("k311/a", b"while away", 1)
    s = node.client("keep311", v5=False, clean=False)
    assert s.flags["session present"] == 1
    assert s.get().payload == b"while away"
    s.close(); p.close()


def test_will():
    w = node.client("w311", v5=False)
    w.sub("w311/#", 1)
    d = node.client("d311", v5=False, will=("w311/d", b"lost", 1, False))
    d.kill()
    assert w.get().payload == b"lost"
    w.close()


def test_bad_filter_gets_0x80():
    r = node.raw()  # paho refuses to send a bad filter, so build the packet by hand
    r.connect(b"f311", v5=False)
    sub = struct.pack("!H", 1) + s16(b"a/#/b") + b"\x01" + s16(b"ok/#") + b"\x01"
    r.send(bytes([0x82]) + varint(len(sub)) + sub)
    t, f, b = r.packet()
    assert t == 9 and b[2:] == bytes([0x80, 1]), b


def test_empty_id_without_clean_session_rejected():
    r = node.raw()
    body = s16(b"MQTT") + bytes([4, 0]) + struct.pack("!H", 60) + s16(b"")
    r.send(bytes([0x10]) + varint(len(body)) + body)
    t, f, b = r.packet()
    assert t == 2 and b[1] == 2, b  # identifier rejected


def test_unsupported_level():
    r = node.raw()
    body = s16(b"MQTT") + bytes([3, 2]) + struct.pack("!H", 60) + s16(b"x")
    r.send(bytes([0x10]) + varint(len(body)) + body)
    t, f, b = r.packet()
    assert t == 2 and b == bytes([0, 1]), b  # 3.1.1 return code 1


def test_takeover():
    a = node.client("dup311", v5=False)
    b = node.client("dup311", v5=False)
    a.disc.get(timeout=5)
    b.close()


run_tests([test_qos_and_retained, test_persistent_session, test_will, test_bad_filter_gets_0x80,
           test_empty_id_without_clean_session_rejected, test_unsupported_level, test_takeover])
