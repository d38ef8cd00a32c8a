#!/usr/bin/python3
"""Hostile loads against one MQTT broker over TLS 1.3 with client certificates (bench/hostile.sh
runs it against kizuna and its peers). Prints key=value lines.

  stuck  DUR: a QoS 0 subscriber that never reads (4 KiB receive buffer) while one publisher
         floods 1 KiB QoS 0 messages for DUR seconds; the broker's peak RSS growth
         (VmRSS, and RssAnon: what it holds, without mapped files) sampled every 50 ms.
  halfopen N: N TCP connections from 127.0.0.2 that send nothing or a partial ClientHello;
         the broker's RSS growth, and a normal client's TLS + CONNECT/CONNACK time (median
         and max of 20, from 127.0.0.1) before and while they are open.

Usage: hostile.py stuck|halfopen PORT PID PKI_DIR [DUR|N]"""
import os, resource, socket, ssl, struct, sys, threading, time

mode, port, pid, pki = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
arg = int(sys.argv[5]) if len(sys.argv) > 5 else (30 if mode == "stuck" else 10000)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss(key):
    for l in open("/proc/%d/status" % pid):
        if l.startswith(key + ":"):
            return int(l.split()[1])
    return 0


def tls(rcvbuf=None, src=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(pki, "ca.pem"))
    ctx.load_cert_chain(os.path.join(pki, "admin.pem"), os.path.join(pki, "admin.key"))
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if src:
        s.bind((src, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle wait for the broker's delayed ACK
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    return ctx.wrap_socket(s, server_hostname="localhost")


def s16(b):
    return struct.pack("!H", len(b)) + b


def varint(n):
    out = b""
    while True:
        d, n = n % 128, n // 128
        out += bytes([d | (0x80 if n else 0)])
        if not n:
            return out


def connect(s, cid):
    body = s16(b"MQTT") + bytes([4, 2]) + struct.pack("!H", 60) + s16(cid)
    s.sendall(bytes([0x10]) + varint(len(body)) + body)
    buf = b""
    while len(buf) < 4:
        d = s.recv(4 - len(buf))
        if not d:
            raise ConnectionError("closed before CONNACK")
        buf += d
    assert buf[0] == 0x20 and buf[3] == 0, buf


def stuck(dur):
    sub = tls(rcvbuf=4096)
    connect(sub, b"stuck")
    body = struct.pack("!H", 1) + s16(b"flood/#") + b"\x00"
    sub.sendall(bytes([0x82]) + varint(len(body)) + body)
    time.sleep(0.5)
    pub = tls()
    connect(pub, b"flooder")
    topic = b"flood/a"
    one = bytes([0x30]) + varint(2 + len(topic) + 1000) + s16(topic) + b"x" * 1000
    chunk = one * 256
    base_v, base_a = rss("VmRSS"), rss("RssAnon")
    peak = [base_v, base_a]
    stop = False

    def sample():
        while not stop:
            peak[0] = max(peak[0], rss("VmRSS"))
            peak[1] = max(peak[1], rss("RssAnon"))
            time.sleep(0.05)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    sent, end = 0, time.time() + dur
    pub.settimeout(5)
    try:
        while time.time() < end:
            pub.sendall(chunk)
            sent += 256
    except (OSError, ssl.SSLError) as e:
        print("publisher_stopped=%s" % type(e).__name__)
    stop = True
    t.join()
    print("messages_sent=%d seconds=%d" % (sent, dur))
    print("rss_start_kb=%d rss_peak_kb=%d rss_growth_kb=%d" % (base_v, peak[0], peak[0] - base_v))
    print("anon_start_kb=%d anon_peak_kb=%d anon_growth_kb=%d" % (base_a, peak[1], peak[1] - base_a))


def connack_ms(n=20):
    v = []
    for i in range(n):
        t0 = time.perf_counter()
        s = tls()
        connect(s, b"normal-%d" % i)
        v.append((time.perf_counter() - t0) * 1000)
        s.close()
    v.sort()
    return v[len(v) // 2], v[-1]


def halfopen(n):
    b50, bmax = connack_ms()
    base = rss("VmRSS")
    socks = []
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    for i in range(n):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.settimeout(10)
        try:
            s.connect(("127.0.0.1", port))
            if i % 2:
                s.send(hello)
        except OSError:
            pass
        socks.append(s)
    time.sleep(1)
    grown = rss("VmRSS") - base
    w50, wmax = connack_ms()
    print("halfopen=%d rss_growth_kb=%d" % (n, grown))
    print("connack_ms_before_p50=%.1f max=%.1f" % (b50, bmax))
    print("connack_ms_during_p50=%.1f max=%.1f" % (w50, wmax))
    for s in socks:
        s.close()


stuck(arg) if mode == "stuck" else halfopen(arg)
