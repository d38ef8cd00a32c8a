#!/usr/bin/python3
"""MQTT over WebSocket on the HTTPS listener (docs/MQTT.md "Over WebSocket"), with a standard
client (Eclipse Paho's websockets transport) and a raw WebSocket client for what Paho does
not send:
- MQTT 5 and 3.1.1 over WebSocket publish to and receive from clients of the MQTT port, both
  ways, QoS 0/1/2; many client ids, so that CONNECTs move to their home worker;
- a will is published when the WebSocket connection drops;
- no client certificate: 401; a handshake without the subprotocol "mqtt": 400; no upgrade:
  426; each with a JSON body;
- a text frame closes the connection with 1003, an unmasked frame with 1002 (RFC 6455);
- with policy (tests/data/policy), the decision point is the MQTT port's: a secret record
  published over WebSocket reaches a cleared subscriber and not an uncleared one (both over
  WebSocket); a subscription outside the identity's rights is refused (0x87) and its publish
  reaches nobody;
- mqtt.websocket = 0: /mqtt is not there (404)."""
import base64, json, os, socket, ssl, struct, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kzharness import *

node = Node()


def ws_conn(n, cert=True, headers=None, path="/mqtt"):
    """A TLS connection to the HTTPS port with a hand-written opening handshake: (socket,
    status, response headers and body)."""
    ctx = ssl.create_default_context(cafile=os.path.join(n.pki, "ca.pem"))
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(os.path.join(n.pki, "admin.pem"), os.path.join(n.pki, "admin.key"))
    ctx.set_alpn_protocols(["http/1.1"])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", n.https_port()), 5))
    h = {"Host": "localhost", "Upgrade": "websocket", "Connection": "Upgrade",
         "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Version": "13",
         "Sec-WebSocket-Protocol": "mqtt"}
    h.update(headers or {})
    req = "GET %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % (k, v) for k, v in h.items() if v is not None)
    s.sendall((req + "\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    import re
    m = re.search(rb"content-length: *(\d+)", head, re.I)
    while m and len(rest) < int(m.group(1)):
        rest += s.recv(4096)
    return s, status, head.decode(), rest


def frame(op, payload, mask=True, fin=True):
    b = bytes([(0x80 if fin else 0) | op])
    n = len(payload)
    m = 0x80 if mask else 0
    b += bytes([m | n]) if n < 126 else bytes([m | 126]) + struct.pack("!H", n)
    if not mask:
        return b + payload
    key = os.urandom(4)
    return b + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def read_frame(s, buf=b""):
    while len(buf) < 2:
        buf += s.recv(4096)
    n = buf[1] & 0x7F
    hl = 2 if n < 126 else 4
    while len(buf) < hl:
        buf += s.recv(4096)
    if n == 126:
        n = struct.unpack("!H", buf[2:4])[0]
    while len(buf) < hl + n:
        buf += s.recv(4096)
    return buf[0] & 0x0F, buf[hl:hl + n], buf[hl + n:]


def test_both_ways_with_paho_v5_and_v311():
    tcp = node.client("tcp-side")
    assert tcp.sub("ws/#", qos=1)[0].value == 1
    w5 = node.client("ws-v5", ws=True)
    assert w5.sub("tcp/#", qos=2)[0].value == 2
    w3 = node.client("ws-v311", v5=False, ws=True)
    w3.sub("tcp/#", qos=1)
    for qos in (0, 1, 2):
        w5.pub("ws/a", "from-ws-%d" % qos, qos=qos)
        m = tcp.get()
        assert (m.topic, m.payload) == ("ws/a", b"from-ws-%d" % qos)
    w3.pub("ws/b", "from-v311", qos=1)
    assert tcp.get().payload == b"from-v311"
    tcp.pub("tcp/x", "to-ws", qos=1)
    assert w5.get().payload == b"to-ws"
    assert w3.get().payload == b"to-ws"
    big = os.urandom(200000)  # several frames' worth each way (16-bit and 64-bit lengths)
    tcp.pub("tcp/big", big, qos=1)
    assert w5.get().payload == big
    w5.pub("ws/big", big, qos=1)
    assert tcp.get().payload == big
    for c in (tcp, w5, w3):
        c.close()


def test_many_client_ids_move_to_their_home_worker():
    sub = node.client("ws-many-sub")
    sub.sub("many/#", qos=1)
    clients = [node.client("ws-many-%d" % i, ws=True) for i in range(8)]
    for i, c in enumerate(clients):
        c.pub("many/%d" % i, "m%d" % i, qos=1)
    got = sorted(sub.get().payload.decode() for _ in clients)
    assert got == sorted("m%d" % i for i in range(8)), got
    for c in clients:
        c.close()
    sub.close()
    assert "MQTT over WebSocket" in node.logtext()


def test_will_when_the_websocket_drops():
    sub = node.client("ws-will-sub")
    sub.sub("wswill/#", qos=1)
    w = node.client("ws-will", ws=True, will=("wswill/gone", b"bye", 1, False))
    w.c.loop_stop()
    w.c.socket().close()  # no DISCONNECT, no close frame
    m = sub.get(timeout=10)
    assert (m.topic, m.payload) == ("wswill/gone", b"bye")
    sub.close()


def test_handshake_refusals_are_clear():
    s, st, head, body = ws_conn(node, cert=False)
    assert st == 401 and "certificate" in json.loads(body)["description"], head
    s.close()
    s, st, head, body = ws_conn(node, headers={"Sec-WebSocket-Protocol": "chat"})
    assert st == 400 and "'mqtt'" in json.loads(body)["description"], (head, body)
    s.close()
    s, st, head, body = ws_conn(node, headers={"Upgrade": None, "Connection": None})
    assert st == 426, head
    s.close()
    s, st, head, body = ws_conn(node, headers={"Sec-WebSocket-Version": "8"})
    assert st == 426 and "sec-websocket-version: 13" in head.lower(), head
    s.close()


def test_accept_key_and_frames():
    key = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3's example
    s, st, head, rest = ws_conn(node, headers={"Sec-WebSocket-Key": key})
    assert st == 101, head
    assert "sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=" in head.lower(), head
    assert "sec-websocket-protocol: mqtt" in head.lower(), head
    # an MQTT 5 CONNECT split over two frames, then PINGREQ in a frame with a ping before it
    body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + b"\x00\x03ws1"
    connect = bytes([0x10, len(body)]) + body
    s.sendall(frame(0x2, connect[:5], fin=False))
    s.sendall(frame(0x0, connect[5:]))
    op, p, rest = read_frame(s, rest)
    assert op == 0x2 and p[0] == 0x20, (op, p)  # CONNACK in a binary frame
    s.sendall(frame(0x9, b"hi"))
    op, p, rest = read_frame(s, rest)
    assert (op, p) == (0xA, b"hi"), (op, p)
    s.sendall(frame(0x2, b"\xc0\x00"))
    op, p, rest = read_frame(s, rest)
    assert op == 0x2 and p == b"\xd0\x00", p  # PINGRESP
    s.sendall(frame(0x1, b"text"))
    op, p, rest = read_frame(s, rest)
    assert op == 0x8 and struct.unpack("!H", p[:2])[0] == 1003, (op, p)
    s.close()
    s, st, head, rest = ws_conn(node)
    s.sendall(frame(0x2, b"\xc0\x00", mask=False))
    op, p, rest = read_frame(s, rest)
    assert op == 0x8 and struct.unpack("!H", p[:2])[0] == 1002, (op, p)
    s.close()


def test_policy_applies_over_websocket():
    import shutil, tempfile
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    fix = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "policy")
    tmp = tmpdir("kz-ws-pol-")
    for f in ("kizuna.policy", "identities"):
        shutil.copy(os.path.join(fix, f), tmp)
    n = Node("policy.file = %s/kizuna.policy\npolicy.registry = %s/identities\n" % (tmp, tmp))
    td = "spiffe://kizuna.local/"
    alice = n.issue("alice", spiffe=td + "mod/user/alice")  # secret, cyber, operator
    dave = n.issue("dave", spiffe=td + "mod/user/dave")     # confidential, operator
    bob = n.issue("bob", spiffe=td + "meti/user/bob")       # not an operator
    a = n.client("ws-alice", ws=True, cert=alice)
    d = n.client("ws-dave", ws=True, cert=dave)
    assert a.sub("ops/#", qos=1)[0].value == 1 and d.sub("ops/#", qos=1)[0].value == 1
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = [("kz-label", "class=secret;caveat=cyber")]
    a.pub("ops/brief", b"secret-brief", 1, props=p)
    a.pub("ops/brief", b"open-brief", 1)
    assert a.get().payload == b"secret-brief"
    assert a.get().payload == b"open-brief"
    m = d.get()
    assert m.payload == b"open-brief", "the uncleared subscriber got %r" % m.payload
    b = n.client("ws-bob", ws=True, cert=bob)
    assert b.sub("ops/#", qos=1)[0].value == 0x87
    info = b.c.publish("ops/x", b"x", 1)
    info.wait_for_publish(5)
    b.none(1.0)
    d.none(1.0)  # a publish outside bob's rights reaches nobody
    for c in (a, d, b):
        c.close()
    n.stop()


def test_origin_property():
    """mqtt.origin_property = 1: deliveries carry kz-origin, the publisher's identity, live and
    replayed; one a client sends is dropped, not forwarded."""
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    n = Node("mqtt.origin_property = 1\n")
    bob = n.issue("bob")
    sub = n.client("origin-sub", ws=True)
    sub.sub("origin/#", qos=1)
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = [("note", "kept"), ("kz-origin", "spiffe://forged/x/user/y")]
    c = n.client("origin-pub", cert=bob)
    c.pub("origin/a", "hello", qos=1, props=p)
    m = sub.get()
    up = getattr(m.properties, "UserProperty", [])
    assert ("note", "kept") in up and up.count(("kz-origin", "spiffe://kizuna.local/dev/user/bob")) == 1, up
    assert not [v for k, v in up if k == "kz-origin" and "forged" in v], up
    # replayed from the log: the same, from the record's origin
    rp = Properties(PacketTypes.SUBSCRIBE)
    rp.UserProperty = [("kz-replay-since", "2000-01-01T00:00:00Z")]
    r = n.client("origin-replay")
    r.sub("origin/#", qos=1, props=rp)
    up = getattr(r.get().properties, "UserProperty", [])
    assert ("kz-origin", "spiffe://kizuna.local/dev/user/bob") in up, up
    for x in (sub, c, r):
        x.close()
    n.stop()


def test_disabled():
    n = Node("mqtt.websocket = 0\n")
    s, st, head, body = ws_conn(n)
    assert st == 404, head
    s.close()
    n.stop()


run_tests([test_both_ways_with_paho_v5_and_v311, test_many_client_ids_move_to_their_home_worker,
           test_will_when_the_websocket_drops, test_handshake_refusals_are_clear, test_accept_key_and_frames,
           test_policy_applies_over_websocket, test_origin_property, test_disabled])
