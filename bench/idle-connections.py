#!/usr/bin/python3
"""Opens N idle MQTT-over-TLS connections (CONNECT, CONNACK, then nothing) to a node and
prints the node's RSS before and after. Usage: idle-connections.py PORT PKI-DIR PID [N]"""
import os, resource, socket, ssl, struct, sys, time

port, pki, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
n = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kb():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
ctx.load_cert_chain(os.path.join(pki, "admin.pem"), os.path.join(pki, "admin.key"))
before = rss_kb()
conns = []
start = time.time()
for i in range(n):
    raw = socket.create_connection(("127.0.0.1", port))
    # Without TCP_NODELAY the CONNECT waits ~40 ms behind the delayed ACK of the TLS Finished.
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    cid = b"idle-%d" % i
    body = struct.pack("!H", 4) + b"MQTT" + bytes([4, 2]) + struct.pack("!H", 0) + struct.pack("!H", len(cid)) + cid
    s.sendall(bytes([0x10, len(body)]) + body)
    assert s.recv(4) == b"\x20\x02\x00\x00"
    conns.append(s)
time.sleep(1)
after = rss_kb()
print("connections=%d open_seconds=%.1f rss_before_kb=%d rss_after_kb=%d per_connection_kb=%.1f"
      % (len(conns), time.time() - start, before, after, (after - before) / len(conns)))
