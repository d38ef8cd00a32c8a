#!/usr/bin/python3
"""A TAXII POST body over 16 MiB with /tmp read-only (docs/HTTP.md "Errors and limits").

libh2o 2.2.5 moves a request body whose buffer grows to 32 MiB into an unlinked file it
makes under /tmp (mkstemp, mmap'd shared). The body of a POST then lay in a disk-backed file
outside the node's data directory, and with /tmp read-only (a hardened host) such a POST got
no answer at all: HTTP/1.1 closed after its 100 Continue, HTTP/2 dropped. The node now keeps
those buffers on tmpfs (/dev/shm) or, without a writable tmpfs there, in its own memory.

Each case runs `kizuna serve` in a mount namespace of its own (unshare -m, root) with /tmp
bound read-only, and /dev/shm as well in the second. A 35 MB body (ATT&CK ICS with its
descriptions lengthened, 1,826 objects) is POSTed over HTTP/1.1 (python3-requests) and
HTTP/2 (curl) with https.max_body_bytes = 64 MiB: 202, every object accepted.

A third case gives the node a /dev/shm of its own (a 600 MB tmpfs: room for 8 bodies at the
cap, so the node chooses it at start) and fills it after the start: the node looks at the room
again as requests come and keeps such buffers in memory while there is none (before, the POST
got no answer), and goes back to tmpfs once there is."""
import json, os, shutil, subprocess, sys, tempfile, time, uuid
sys.path.insert(0, os.path.dirname(__file__))
from kzharness import KIZUNA, SHARED, free_port, run_tests, wait_serving
import requests

ICS = os.path.join(SHARED, "data", "stix", "ics-attack.json")
TAXII = "application/taxii+json;version=2.1"
PAD = "x" * 20000  # on each description: about 35 MB in all


def body():
    """ICS with fresh ids (so each POST adds new versions) and longer descriptions."""
    text = open(ICS).read()
    objs = json.loads(text)["objects"]
    ids = {o["id"]: o["id"].split("--")[0] + "--" + str(uuid.uuid4()) for o in objs}
    for k, v in ids.items():
        text = text.replace(k, v)
    objs = json.loads(text)["objects"]
    for o in objs:
        if "description" in o:
            o["description"] = o["description"] + " " + PAD
    b = json.dumps({"objects": objs}).encode()
    assert len(b) > 17 << 20, len(b)  # over 16 MiB: libh2o's buffer reaches 32 MiB
    return b, len(objs)


class Jailed:
    """kizuna serve with /tmp (and ro_shm: /dev/shm) read-only in its own mount namespace."""

    def __init__(self, ro_shm, shm_mb=0):
        self.dir = tempfile.mkdtemp(prefix="kz-it-big-", dir="/var/tmp")
        self.port, self.hport = free_port(), free_port()
        self.cfg = os.path.join(self.dir, "kizuna.conf")
        with open(self.cfg, "w") as f:
            f.write("mqtt.listen = 127.0.0.1:%d\nhttps.listen = 127.0.0.1:%d\npolicy.open = 1\n"
                    "https.max_body_bytes = 67108864\nhttps.request_timeout_ms = 60000\n" % (self.port, self.hport))
        self.data = os.path.join(self.dir, "var")
        ro = "mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp"
        if ro_shm:
            ro += " && mount --bind /dev/shm /dev/shm && mount -o remount,bind,ro /dev/shm"
        if shm_mb:
            ro += " && mount -t tmpfs -o size=%dm tmpfs /dev/shm" % shm_mb
        self.log = open(os.path.join(self.dir, "serve.log"), "w+")
        self.proc = subprocess.Popen(["unshare", "-m", "sh", "-c", ro + ' && exec "$0" serve --config "$1" --data "$2"',
                                      KIZUNA, self.cfg, self.data], stdout=self.log, stderr=subprocess.STDOUT)
        wait_serving(self.proc, self.hport, self.text)
        self.ca = os.path.join(self.data, "pki", "ca.pem")
        self.admin = (os.path.join(self.data, "pki", "admin.pem"), os.path.join(self.data, "pki", "admin.key"))
        coll = json.load(open(os.path.join(self.data, "taxii-collections.json")))[0]["id"]
        self.url = "https://localhost:%d/taxii2/api/collections/%s/objects/" % (self.hport, coll)

    def text(self):
        self.log.flush()
        return open(self.log.name).read()

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def post_both(n):
    """The body over HTTP/1.1 and over HTTP/2: 202, every object accepted."""
    b, count = body()
    r = requests.post(n.url, data=b, verify=n.ca, cert=n.admin, timeout=120,
                      headers={"Content-Type": TAXII, "Accept": TAXII})
    assert r.status_code == 202, (r.status_code, r.text[:300], n.text()[-2000:])
    st = r.json()
    assert st["success_count"] == count and st["failure_count"] == 0, {k: st[k] for k in st if k.endswith("count")}
    b, count = body()
    path = os.path.join(n.dir, "body.json")
    open(path, "wb").write(b)
    c = subprocess.run(["curl", "-s", "--http2", "--cacert", n.ca, "--cert", n.admin[0], "--key", n.admin[1],
                        "-H", "Content-Type: " + TAXII, "-H", "Accept: " + TAXII, "--data-binary", "@" + path,
                        "-w", "\n%{http_code} %{http_version}", n.url], capture_output=True, text=True, timeout=120)
    out, code = c.stdout.rsplit("\n", 1)
    assert code == "202 2", (code, out[:300], n.text()[-2000:])
    st = json.loads(out)
    assert st["success_count"] == count and st["failure_count"] == 0, {k: st[k] for k in st if k.endswith("count")}
    return len(b), count


def check(ro_shm):
    n = Jailed(ro_shm)
    try:
        size, count = post_both(n)
        assert "temporary file" not in n.text(), n.text()[-2000:]
        print("  /tmp read-only%s: HTTP/1.1 and HTTP/2 POSTs of %.1f MB answered 202, %d objects each" % (
            ", /dev/shm too" if ro_shm else "", size / 1e6, count))
    except Exception:
        # what the node said (it runs in a directory removed below): the diagnosis
        print("--- the node's log (last 4000 characters) ---\n" + n.text()[-4000:])
        raise
    finally:
        n.close()


def test_big_body_with_shm_filled_after_the_start():
    n = Jailed(False, shm_mb=600)
    try:
        r = requests.get("https://localhost:%d/healthz" % n.hport, verify=n.ca, cert=n.admin, timeout=30)
        assert r.status_code == 200, r.text
        assert "on tmpfs, in unlinked files under /dev/shm" in n.text(), n.text()[-2000:]
        # 560 MB of the 600 taken by another program, in the node's mount namespace
        subprocess.run(["nsenter", "-t", str(n.proc.pid), "-m", "dd", "if=/dev/zero", "of=/dev/shm/other",
                        "bs=1M", "count=560"], check=True, capture_output=True, timeout=60)
        time.sleep(1.2)  # the node looks at the room at most once a second
        size, count = post_both(n)
        assert "has no room for a body at https.max_body_bytes" in n.text(), n.text()[-2000:]
        subprocess.run(["nsenter", "-t", str(n.proc.pid), "-m", "rm", "/dev/shm/other"], check=True, timeout=60)
        time.sleep(1.2)
        post_both(n)
        assert "has room again" in n.text(), n.text()[-2000:]
        assert "temporary file" not in n.text(), n.text()[-2000:]
        print("  /dev/shm filled after the start: POSTs of %.1f MB answered 202 (%d objects), in memory, then on "
              "tmpfs again once emptied" % (size / 1e6, count))
    except Exception:
        print("--- the node's log (last 4000 characters) ---\n" + n.text()[-4000:])
        raise
    finally:
        n.close()


def test_big_body_with_tmp_read_only():
    check(False)


def test_big_body_with_tmp_and_shm_read_only():
    check(True)


if os.geteuid() != 0 or not shutil.which("unshare"):
    print("SKIP: needs root and unshare (a mount namespace of its own)")
    sys.exit(77)
run_tests([test_big_body_with_tmp_read_only, test_big_body_with_tmp_and_shm_read_only,
           test_big_body_with_shm_filled_after_the_start])
