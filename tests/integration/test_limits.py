#!/usr/bin/python3
"""Every limit against a real node configured with small caps."""
import time
from kzharness import *

node = Node("""limits.max_packet_size = 1024
limits.max_topic_len = 32
limits.max_topic_levels = 4
limits.max_subs_per_client = 3
limits.max_inflight = 5
limits.max_queued_msgs = 10
limits.max_connections = 6
limits.connect_timeout_ms = 500
limits.max_publish_rate = 50
limits.max_keepalive = 30
limits.max_client_id_len = 16
limits.topic_alias_max = 2
""")


def test_packet_size():
    c = node.client("big")
    assert c.props.MaximumPacketSize == 1024
    c.c.publish("big", b"x" * 2000, 0)
    rc = c.disc.get(timeout=5)
    assert "0x95" in node.logtext()


def test_topic_length_and_levels():
    r = node.raw()
    r.connect(b"tl")
    t = b"a" * 40
    body = s16(t) + b"\x00"
    r.send(bytes([0x30]) + varint(len(body)) + body)
    p = r.packet()
    assert p[0] == 14 and p[2][0] == 0x90, p
    c = node.client("lv")
    assert c.sub("a/b/c/d/e", 1)[0].value == 0x8F


def test_subs_per_client():
    c = node.client("subs")
    for i in range(3):
        c.sub("s/%d" % i, 0)
    assert c.sub("s/4", 0)[0].value == 0x97
    c.close()


def test_receive_maximum_and_queue():
    r = node.raw()
    t, f, body = r.connect(b"rm", props=bytes([0x21, 0, 100]))
    sub = struct.pack("!H", 1) + b"\x00" + s16(b"rq") + b"\x01"
    r.send(bytes([0x82]) + varint(len(sub)) + sub)
    assert r.packet()[0] == 9
    p = node.client("rqp")
    for i in range(30):
        p.pub("rq", b"%d" % i, 1)
    time.sleep(0.3)
    got = 0
    r.s.settimeout(0.5)
    try:
        while True:
            pk = r.packet()
            if pk is None:
                break
            got += pk[0] == 3
    except Exception:
        pass
    assert got == 5, got  # the node's window (max_inflight) holds the rest
    assert "queued message limit reached" in node.logtext()
    p.close()


def test_publish_rate():
    c = node.client("rate")
    for i in range(200):
        c.c.publish("rate/x", b"x", 0)
    rc = c.disc.get(timeout=5)
    assert "0x96" in node.logtext()


def test_server_keepalive():
    c = node.client("ka", keepalive=600)
    assert c.props.ServerKeepAlive == 30
    c.close()


def test_client_id_length():
    r = node.raw()
    t, f, b = r.connect(b"x" * 40)
    assert t == 2 and b[1] == 0x85


def test_topic_alias_max():
    r = node.raw()
    r.connect(b"alias")
    props = bytes([0x23, 0, 9])
    body = s16(b"al") + varint(len(props)) + props
    r.send(bytes([0x30]) + varint(len(body)) + body)
    p = r.packet()
    assert p[0] == 14 and p[2][0] == 0x94, p


def test_connect_timeout():
    import socket as so, ssl as sl
    ctx = sl.create_default_context(cafile=os.path.join(node.pki, "ca.pem"))
    ctx.load_cert_chain(os.path.join(node.pki, "admin.pem"), os.path.join(node.pki, "admin.key"))
    s = ctx.wrap_socket(so.create_connection(("127.0.0.1", node.port)), server_hostname="localhost")
    s.settimeout(5)
    start = time.time()
    assert s.recv(10) == b""
    assert time.time() - start < 3


def test_connections():
    cs = []
    refused = 0
    for i in range(10):
        r = node.raw()
        t, f, b = r.connect(b"c%d" % i)
        if b[1] == 0x89:
            refused += 1
        cs.append(r)
    assert refused >= 4, refused


run_tests([test_packet_size, test_topic_length_and_levels, test_subs_per_client,
           test_receive_maximum_and_queue, test_publish_rate, test_server_keepalive,
           test_client_id_length, test_topic_alias_max, test_connect_timeout, test_connections])
