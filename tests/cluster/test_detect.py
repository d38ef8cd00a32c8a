#!/usr/bin/python3
"""Detection in a cluster (docs/DETECTION.md "In a cluster"): two nodes with detection on, one
nats-server. An indicator POSTed over TAXII on node 1 reaches node 2 through the stream and is
matched there too. Log records reach both nodes' logs, but each is matched by the node that
accepted it (detect.all_nodes = 0, node 1), not again by the others; node 2 runs with
detect.all_nodes = 1 and also matches the records node 1 accepted."""
import gzip, json, os, sys, uuid
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *
import requests

TAXII = "application/taxii+json;version=2.1"
SHARED = os.environ.get("KZ_SHARED_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                                      "shared"))
DNS = os.path.join(SHARED, "data", "zeek", "zed-sample-data", "zeek-default", "dns.log.gz")
if not os.path.exists(DNS):
    print("SKIP: no %s" % DNS)
    sys.exit(77)
HA, HB = free_port(), free_port()
DET = "detect.enabled = 1\ndetect.flush_ms = 100\n"
a = cluster_node("n1", extra="https.listen = 127.0.0.1:%d\n%s" % (HA, DET))
nats = Nats(a.pki, os.path.join(a.dir, "js"))
COLLS = os.path.join(a.data, "taxii-collections.json")
b = cluster_node("n2", pki_from=a, extra="https.listen = 127.0.0.1:%d\ntaxii.collections = %s\n%sdetect.all_nodes = 1\n"
                 % (HB, COLLS, DET))
for n in (a, b):
    wait_log(n, "JetStream answers")
COLL = json.load(open(COLLS))[0]["id"]
CA = os.path.join(a.pki, "ca.pem")
ADMIN = (os.path.join(a.pki, "admin.pem"), os.path.join(a.pki, "admin.key"))


def dns_lines(query, n):
    """The dns log's header and its first n lines asking for query (one message)."""
    head, lines = [], []
    with gzip.open(DNS, "rt") as f:
        for line in f:
            if line.startswith("#"):
                if not lines:
                    head.append(line)
            elif line.split("\t")[9] == query:
                lines.append(line)
                if len(lines) == n:
                    break
    return "".join(head + lines)


def detect(port):
    return requests.get("https://localhost:%d/api/v1/detect/status" % port, verify=CA, cert=ADMIN).json()


def test_each_log_record_is_matched_by_the_node_that_took_it():
    ind = {"type": "indicator", "spec_version": "2.1", "id": "indicator--" + str(uuid.uuid4()),
           "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z", "name": "t",
           "pattern": "[domain-name:value = 'ise.wrccdc.org']", "pattern_type": "stix",
           "valid_from": "2018-01-01T00:00:00Z"}  # before the log's events
    r = requests.post("https://localhost:%d/taxii2/api/collections/%s/objects/" % (HA, COLL), verify=CA, cert=ADMIN,
                      data=json.dumps({"objects": [ind]}), headers={"Content-Type": TAXII, "Accept": TAXII})
    assert r.status_code == 202 and r.json()["success_count"] == 1, r.text
    assert until(lambda: detect(HA)["indicators"] == 1 and detect(HB)["indicators"] == 1, 15), (detect(HA), detect(HB))
    msg = dns_lines("ise.wrccdc.org", 3)
    sub = a.client(cert=ADMIN)  # node 1 delivers both records: both are in its log
    sub.sub("kz/logs/#", 1)
    for n in (a, b):  # three lines accepted by each node
        c = n.client(cert=ADMIN)
        c.pub("kz/logs/zeek/dns", msg, 1)
        c.close()
    got = drain(sub, 3.0)
    sub.close()
    assert len(got) == 2, len(got)
    # node 2 matches all 6 lines (detect.all_nodes = 1); node 1 only the 3 it accepted
    assert until(lambda: detect(HB)["events"] == 6, 15), detect(HB)
    assert until(lambda: detect(HA)["events"] == 3, 15), detect(HA)
    time.sleep(1.0)  # node 1 read its whole log by now (flush_ms 100): nothing more is matched
    sa, sb = detect(HA), detect(HB)
    assert sa["events"] == 3 and sa["matches"] == 3, sa
    assert sb["events"] == 6 and sb["matches"] == 6, sb


run_tests([test_each_log_record_is_matched_by_the_node_that_took_it])
nats.kill()
