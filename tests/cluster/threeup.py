"""The 3 nats-servers and 3 nodes of scripts/cluster-up, for the tests that need all of them
(test_faults.py, test_partition.py): ports laid out from one free base port, node i's log, its
MQTT port, and cluster-down at the end (the directory kept with KEEP=1)."""
import os, shutil, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from kzharness import KIZUNA

if not shutil.which("nats-server"):
    print("SKIP: nats-server is not installed (scripts/deps installs it)")
    sys.exit(77)
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def free_base(count):
    return int(subprocess.run([os.path.join(ROOT, "scripts", "free-port-base"), str(count)], capture_output=True,
                              text=True, check=True).stdout)


class Cluster:
    def __init__(self, prefix, base, env=None):
        self.dir, self.base = tempfile.mkdtemp(prefix=prefix), base
        subprocess.run([os.path.join(ROOT, "scripts", "cluster-up"), self.dir, str(base)],
                       env=dict(os.environ, KZ=KIZUNA, **(env or {})), check=True, stdout=subprocess.DEVNULL)
        self.pki = os.path.join(self.dir, "n1", "pki")
        self.port = {i: base + 29 + i for i in (1, 2, 3)}
        deadline = time.time() + 120
        while time.time() < deadline and not all("JetStream answers" in self.logtext(i) for i in (1, 2, 3)):
            time.sleep(0.2)
        if not all("JetStream answers" in self.logtext(i) for i in (1, 2, 3)):
            # what each server and node said, then nothing left running (a CI run once failed
            # here with no more than this sentence to go on)
            self.dump_logs()
            self.down()
            raise AssertionError("nodes never reached JetStream within 120 s (base port %d)" % base)

    def dump_logs(self):
        for i in (1, 2, 3):
            for name, path in (("nats-server %d" % i, os.path.join(self.dir, "s%d" % i, "nats.log")),
                               ("node %d" % i, os.path.join(self.dir, "n%d" % i, "serve.log"))):
                try:
                    text = open(path, errors="replace").read()
                except OSError as e:
                    text = str(e)
                print("--- %s log (last 3000 bytes):\n%s" % (name, text[-3000:]))

    def logtext(self, i):
        return open(os.path.join(self.dir, "n%d" % i, "serve.log")).read()

    def pids(self):
        return [int(l) for l in open(os.path.join(self.dir, "pids")).read().split()]

    def down(self):
        subprocess.run([os.path.join(ROOT, "scripts", "cluster-down"), self.dir], stdout=subprocess.DEVNULL)
        if not os.environ.get("KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, test, cleanup=None):
        """Runs test, prints PASS or FAIL (with the nodes' log tails), stops the cluster and
        exits with the result."""
        failed = 0
        try:
            test()
            print("PASS %s" % test.__name__)
        except Exception as e:
            import traceback
            traceback.print_exc()
            print("FAIL %s: %s" % (test.__name__, e))
            self.dump_logs()
            failed = 1
        finally:
            if cleanup:
                cleanup()
            self.down()
        print("%d passed, %d failed" % (1 - failed, failed))
        sys.exit(failed)
