"""The TLS 1.3 record layer that takes over server connections after the handshake
(src/net/net_rl.c): KeyUpdate both ways with openssl s_client, a tampered record refused
(bad_record_mac) and the connection closed, a record over the size limit refused, and
close_notify honoured. Every other MQTT test runs over it too."""
import os, select, socket, ssl, struct, subprocess, sys, threading, time
sys.path.insert(0, os.path.dirname(__file__))
from kzharness import Node, run_tests

node = Node()
CONNECT = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 0])
CONNACK = b"\x20\x02\x00\x00"


def s_client_key_update(cmd):
    """s_client sends KeyUpdate ('K': update_requested, 'k': not), then an MQTT CONNECT; the
    CONNACK must come back encrypted under the right keys."""
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % node.port, "-tls1_3",
                          "-CAfile", os.path.join(node.pki, "ca.pem"), "-cert", os.path.join(node.pki, "admin.pem"),
                          "-key", os.path.join(node.pki, "admin.key")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # the handshake
        p.stdin.write((cmd + "\n").encode())
        p.stdin.flush()
        time.sleep(0.5)
        p.stdin.write(CONNECT)
        p.stdin.flush()
        os.set_blocking(p.stdout.fileno(), False)
        out, t0 = b"", time.time()
        while time.time() - t0 < 10 and CONNACK not in out:
            if select.select([p.stdout], [], [], 0.2)[0]:
                out += p.stdout.read() or b""
        return out, p
    finally:
        p.kill()
        p.wait()


def test_key_update_requested_and_not():
    for cmd in ("K", "k"):
        out, p = s_client_key_update(cmd)
        err = p.stderr.read().decode(errors="replace")
        assert "KEYUPDATE" in err, err[-500:]
        assert CONNACK in out, (cmd, out, err[-500:])


class Proxy:
    """A TCP relay that corrupts the client's next write once armed (after the CONNACK)."""

    def __init__(self, mutate):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.port = self.ls.getsockname()[1]
        self.mutate = mutate
        self.server_spoke = False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        c, _ = self.ls.accept()
        s = socket.create_connection(("127.0.0.1", node.port))
        socks = [c, s]
        while True:
            r, _, _ = select.select(socks, [], [], 10)
            if not r:
                break
            for x in r:
                try:
                    d = x.recv(65536)
                except OSError:
                    d = b""
                if not d:
                    c.close(), s.close()
                    return
                if x is s:
                    c.sendall(d)
                else:
                    if self.server_spoke == "armed":
                        d = self.mutate(d)
                        self.server_spoke = True
                    s.sendall(d)


def tls_client(port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(node.pki, "ca.pem"))
    ctx.load_cert_chain(os.path.join(node.pki, "admin.pem"), os.path.join(node.pki, "admin.key"))
    t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    t.settimeout(10)
    return t


def closed(t):
    try:
        return t.recv(10) == b""
    except (ssl.SSLError, OSError):
        return True


def corrupted(mutate, log_text):
    before = node.logtext().count(log_text)
    px = Proxy(mutate)
    t = tls_client(px.port)
    t.sendall(CONNECT)
    assert t.recv(4) == CONNACK
    px.server_spoke = "armed"
    t.sendall(b"\xc0\x00")  # PINGREQ: the record the proxy corrupts
    assert closed(t), "the node kept a connection whose record was corrupted"
    deadline = time.time() + 5
    while node.logtext().count(log_text) == before and time.time() < deadline:
        time.sleep(0.05)
    assert node.logtext().count(log_text) > before, node.logtext()[-1500:]


def test_tampered_record_is_refused():
    def flip(d):
        b = bytearray(d)
        b[-1] ^= 0x01  # the tag's last byte
        return bytes(b)
    corrupted(flip, "does not authenticate (bad_record_mac)")


def test_oversized_record_is_refused():
    def big(d):
        return b"\x17\x03\x03" + struct.pack(">H", 16384 + 257) + b"\x00" * 32
    corrupted(big, "malformed record")


def test_close_notify_and_ping_after_many_records():
    t = tls_client(node.port)
    t.sendall(CONNECT)
    assert t.recv(4) == CONNACK
    for _ in range(2000):  # sequence numbers well past the first few
        t.sendall(b"\xc0\x00")
    got = b""
    while len(got) < 4000:
        got += t.recv(65536)
    assert got == b"\xd0\x00" * 2000
    t.unwrap()  # close_notify; the node answers with its own
    t.close()


if __name__ == "__main__":
    run_tests([test_key_update_requested_and_not, test_tampered_record_is_refused, test_oversized_record_is_refused,
               test_close_notify_and_ping_after_many_records])
