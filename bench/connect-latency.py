#!/usr/bin/python3
"""CONNECT to CONNACK latency of MQTT connections made one after another (bench/cluster.sh part
5): each a new TCP and TLS 1.3 connection with the client certificate, then the clock runs
from the CONNECT's last byte sent to the CONNACK's arrival, so the handshake is not in it.
MQTT 3.1.1 (nats-server's MQTT has no 5.0), clean session, a client id of its own per connection.
Usage: bench/connect-latency.py PKI-DIR PORT [COUNT]   (PKI-DIR: ca.pem, admin.pem, admin.key)"""
import os, socket, ssl, struct, sys, time


def s16(b):
    return struct.pack("!H", len(b)) + b


def main():
    pki, port = sys.argv[1], int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
    ctx.load_cert_chain(os.path.join(pki, "admin.pem"), os.path.join(pki, "admin.key"))
    lat, tag = [], "%d-%d" % (os.getpid(), int(time.time()))
    for i in range(n):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 10), server_hostname="localhost")
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = s16(b"MQTT") + bytes([4, 2]) + struct.pack("!H", 30) + s16(("lat-%s-%d" % (tag, i)).encode())
        t0 = time.perf_counter()
        s.sendall(bytes([0x10, len(body)]) + body)
        d = b""
        while len(d) < 4:
            x = s.recv(4 - len(d))
            if not x:
                break
            d += x
        lat.append((time.perf_counter() - t0) * 1000)
        if len(d) < 4 or d[0] != 0x20 or d[3] != 0:
            sys.exit("connection %d: no CONNACK accepting it: %r" % (i, d))
        s.sendall(b"\xe0\x00")
        s.close()
    lat.sort()
    print("n=%d p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms" % (
        n, lat[n // 2], lat[n * 9 // 10], lat[min(n - 1, n * 99 // 100)], lat[-1]))


main()
