#!/usr/bin/python3
"""Records that reach the stream out of their origin's order (docs/CLUSTER.md "The path of a
delivery on another node"), with cluster.gap_timeout_ms = 2000. The test writes into
KZ_RECORDS itself, over NATS with a node certificate, as a node "ghost" whose records 1 and 3
come before its record 2 (what a re-publish after a failed publish looks like):
- record 1 is delivered; record 3 is stored and held back (kizuna_cluster_held 1), not
  delivered while record 2 is awaited;
- after cluster.gap_timeout_ms it is delivered out of order and counted
  (kizuna_cluster_released_out_of_order_total);
- record 2, late, is still taken and delivered (kizuna_cluster_late_total);
- a record whose origin sequence the node has already taken is dropped as a duplicate.
The bodies are real record envelopes: those node n1 published, read back from the stream."""
import base64, json, os, socket, ssl, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *

a = cluster_node("n1", extra="cluster.gap_timeout_ms = 2000\n")
nats = Nats(a.pki, os.path.join(a.dir, "js"))
wait_log(a, "JetStream answers")
cert = os.path.join(a.dir, "nodecert")


class RawNats:
    """Just enough of the NATS client protocol: CONNECT over TLS, requests, HPUB."""

    def __init__(self):
        s = socket.create_connection(("127.0.0.1", nats_port), 5)
        f = s.makefile("rb")
        assert f.readline().startswith(b"INFO "), "no INFO from nats-server"
        ctx = ssl.create_default_context(cafile=os.path.join(a.pki, "ca.pem"))
        ctx.check_hostname = False
        ctx.load_cert_chain(os.path.join(cert, "cert.pem"), os.path.join(cert, "key.pem"))
        self.s = ctx.wrap_socket(s)
        self.f = self.s.makefile("rb")
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,'
                       b'"protocol":1}\r\nSUB _INBOX.t 1\r\nPING\r\n')
        while self.f.readline().strip() != b"PONG":
            pass

    def reply(self):
        while True:
            line = self.f.readline()
            assert line, "nats-server closed the connection"
            if line.startswith(b"PING"):
                self.s.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                total = int(line.split()[-1])
                data = self.f.read(total + 2)[:-2]
                if line.startswith(b"HMSG "):
                    data = data[int(line.split()[-2]):]
                return json.loads(data) if data else {}
            elif line.startswith(b"-ERR"):
                raise AssertionError(line)

    def request(self, subject, body):
        self.s.sendall(b"PUB %s _INBOX.t %d\r\n%s\r\n" % (subject.encode(), len(body), body))
        return self.reply()

    def hpub(self, subject, headers, body):
        h = b"NATS/1.0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers) + b"\r\n"
        self.s.sendall(b"HPUB %s _INBOX.t %d %d\r\n%s%s\r\n" % (subject.encode(), len(h), len(h) + len(body), h,
                                                               body))
        ack = self.reply()
        assert "error" not in ack, ack
        return ack


def ghost(nc, body, oseq, msg_id=None):
    nc.hpub("kz.rec.ghost", [("Nats-Msg-Id", msg_id or "ghost-%d" % oseq), ("Kz-Origin", "ghost"),
                             ("Kz-Origin-Seq", str(oseq))], body)



def test_gap_held_then_released_after_gap_timeout():
    sub = a.client("gap-sub")
    assert sub.sub("gap/#", qos=1)[0].value == 1
    p = a.client("gap-pub")
    for i in (1, 2, 3):
        p.pub("gap/%d" % i, "m%d" % i, qos=1)
    p.close()
    assert drain(sub) == ["m1", "m2", "m3"]
    nc = RawNats()
    bodies = {}
    for seq in range(1, 10):
        r = nc.request("$JS.API.STREAM.MSG.GET.KZ_RECORDS", json.dumps({"seq": seq}).encode())
        if "message" not in r:
            break
        body = base64.b64decode(r["message"]["data"])
        for i in (1, 2, 3):
            if b"m%d" % i in body and r["message"]["subject"] == "kz.rec.n1":
                bodies[i] = body
    assert sorted(bodies) == [1, 2, 3], "the stream does not have n1's three records: %r" % sorted(bodies)
    base = metrics(a)
    ghost(nc, bodies[1], 1)
    ghost(nc, bodies[3], 3)
    got = drain(sub, wait=1.0)  # well inside cluster.gap_timeout_ms
    assert got == ["m1"], "before the gap timeout: %r (record 3 must wait for record 2)" % got
    m = metrics(a)
    assert m["kizuna_cluster_held"] == 1, m
    got = drain(sub, wait=3.0)
    assert got == ["m3"], "after cluster.gap_timeout_ms the held record comes: %r" % got
    m = metrics(a)
    assert m["kizuna_cluster_held"] == 0
    assert m["kizuna_cluster_released_out_of_order_total"] == base["kizuna_cluster_released_out_of_order_total"] + 1
    assert "awaited for 2000 ms (cluster.gap_timeout_ms)" in a.logtext()
    ghost(nc, bodies[2], 2)  # the late one
    assert drain(sub) == ["m2"]
    m = metrics(a)
    assert m["kizuna_cluster_late_total"] == base["kizuna_cluster_late_total"] + 1, m
    # a sequence already taken (a re-publish after JetStream's duplicate window): dropped
    ghost(nc, bodies[2], 3, msg_id="ghost-3-again")
    assert drain(sub) == []
    m2 = metrics(a)
    assert m2["kizuna_cluster_duplicates_total"] == m["kizuna_cluster_duplicates_total"] + 1, m2
    sub.close()


run_tests([test_gap_held_then_released_after_gap_timeout])
nats.kill()
