#!/bin/bash
# Detection's costs (issue 22, BENCHMARKS.md "Detection"): 10^6 indicators of mixed types
# loaded, then Zeek dns events parsed and matched on one core, against a plain baseline in
# the same run: `grep -F -f` of the same indicator values over the same log.
#
# Indicators: every line of the CriticalPathSecurity Zeek intel feeds and ipsum's addresses
# (../shared/data/zeek), then, to reach the count, re-issued values of the same types
# (addresses in other /8s, names under other parents, hashes: new random ones), and 20 names
# taken from the log, so that there are matches. Events: the zed sample's dns.log, repeated
# to about 10^6 lines, uncompressed (the gunzip is not what is measured), and a conn log of the
# same traffic written from it (the sample has none; see below).
# Usage: bench/detect.sh [KIZUNA] [indicators] [log repeats] [shared dir]
set -eu
KZ=$(readlink -f "${1:-$(dirname "$0")/../build/src/cli/kizuna}")
N=${2:-1000000} REP=${3:-20} SHARED=$(readlink -f "${4:-$(dirname "$0")/../../shared}")
T=$(mktemp -d /tmp/kz-detect-bench-XXXXXX)
trap 'rm -rf "$T"' EXIT
echo "# bench/detect.sh: $N indicators, dns.log x $REP, $(nproc) cores, $(date -u +%FT%TZ)"
/usr/bin/python3 - "$SHARED" "$N" "$T" "$REP" <<'EOF'
import glob, gzip, os, random, sys
shared, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
random.seed(22)
lines = []
for f in sorted(glob.glob(os.path.join(shared, "data/zeek/Zeek-Intelligence-Feeds/*.intel"))):
    for l in open(f, errors="replace"):
        if l.startswith("#") or not l.strip():
            continue
        p = l.rstrip("\n").split("\t")
        if len(p) >= 3 and p[1].startswith("Intel::"):
            lines.append((p[0], p[1]))
for l in open(os.path.join(shared, "data/zeek/ipsum/ipsum.txt")):
    if l[0].isdigit():
        lines.append((l.split()[0], "Intel::ADDR"))
log = []
with gzip.open(os.path.join(shared, "data/zeek/zed-sample-data/zeek-default/dns.log.gz"), "rt") as f:
    log = f.read().splitlines(True)
real = len(lines)
names = sorted({l.split("\t")[9] for l in log if not l.startswith("#")})
lines += [(q, "Intel::DOMAIN") for q in random.sample(names, 20)]
base = list(lines)
i = 0
while len(lines) < n:
    v, t = base[i % len(base)]
    k = len(lines)
    if t == "Intel::ADDR" and v.count(".") == 3:
        v = "%d.%d.%d.%d" % (k >> 24 & 255 or 1, k >> 16 & 255, k >> 8 & 255, k & 255)
    elif t == "Intel::DOMAIN":
        v = "r%d.%s" % (k, v)
    elif t == "Intel::FILE_HASH":
        v = "%064x" % random.getrandbits(256) if k % 2 else "%032x" % random.getrandbits(128)
    elif t == "Intel::URL":
        v = "%s/r%d" % (v, k)
    else:
        v = "r%d.%s" % (k, v)
    lines.append((v, t))
    i += 1
lines = lines[:n]
from collections import Counter
mix = Counter(t for v, t in lines)
print("indicator mix: %d from the feeds and ipsum, the rest re-issued; %s" % (min(real, n), ", ".join(
    "%s %.1f %%" % (t.split("::")[1], 100.0 * c / len(lines)) for t, c in mix.most_common())))
with open(os.path.join(out, "ind.intel"), "w") as f:
    f.write("#fields\tindicator\tindicator_type\tmeta.source\n")
    for v, t in lines:
        f.write("%s\t%s\tbench\n" % (v, t))
with open(os.path.join(out, "values.txt"), "w") as f:
    for v, t in lines:
        f.write(v + "\n")
with open(os.path.join(out, "dns.log"), "w") as f:
    head = [l for l in log if l.startswith("#")]
    body = [l for l in log if not l.startswith("#")]
    f.writelines(head)
    for r in range(int(sys.argv[4]) if len(sys.argv) > 4 else 20):
        f.writelines(body)
# a conn log of the same traffic (the sample has none): per dns line, the connection its
# answer led to (its first IPv4 answer, port 443/tcp), else the query itself (53/udp); Zeek's
# conn.log fields and types, as Zeek 6 writes them
with open(os.path.join(out, "conn.log"), "w") as f:
    f.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
            "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes"
            "\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes"
            "\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n"
            "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool"
            "\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n")
    rows = []
    for l in body:
        c = l.rstrip("\n").split("\t")
        ans = [a for a in c[21].split(",") if a.count(".") == 3 and a.replace(".", "").isdigit()]
        if ans:
            rows.append("%s\t%s\t%s\t%s\t%s\t443\ttcp\tssl\t0.512000\t517\t4123\tSF\tT\tF\t0\tShADadFf\t9\t1001"
                        "\t8\t4543\t-\n" % (c[0], c[1], c[2], c[3], ans[0]))
        else:
            rows.append("%s\t%s\t%s\t%s\t%s\t%s\tudp\tdns\t%s\t40\t120\tSF\tT\tT\t0\tDd\t1\t68\t1\t148\t-\n"
                        % (c[0], c[1], c[2], c[3], c[4], c[5], c[8]))
    for r in range(int(sys.argv[4]) if len(sys.argv) > 4 else 20):
        f.writelines(rows)
EOF
EV=$(grep -vc '^#' "$T/dns.log")
CV=$(grep -vc '^#' "$T/conn.log")
echo "indicators: $(($(wc -l < "$T/ind.intel") - 1)) lines, $(du -m "$T/ind.intel" | cut -f1) MB; events: dns $EV, conn $CV"
for LOG in dns conn; do for r in 1 2 3; do
	/usr/bin/time -f "rss %M KB" "$KZ" detect scan "$T/$LOG.log" --indicators "$T/ind.intel" > "$T/out.jsonl" 2> "$T/err"
	S=$(grep 'kizuna detect scan: [0-9]* indicators' "$T/err")
	RSS=$(grep '^rss' "$T/err" | cut -d' ' -f2)
	/usr/bin/python3 - "$S" "$RSS" "$LOG" <<'EOF'
import re, sys
s, rss, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
m = re.search(r"(\d+) indicators .* ([\d.]+) MB\) loaded in ([\d.]+) s; (\d+) events .* in ([\d.]+) s; (\d+) matches, (\d+) sightings", s)
ind, mb, load, events, scan, matches, sg = int(m[1]), float(m[2]), float(m[3]), int(m[4]), float(m[5]), int(m[6]), int(m[7])
print("kizuna: %d indicators in %.2f s (%.0f/s), index %.1f MB = %.0f bytes/indicator, process peak RSS %.0f MB; "
      "%d %s events parsed and matched in %.2f s = %.0f events/s on one core; %d matches, %d sightings"
      % (ind, load, ind / load, mb, mb * 1e6 / ind, rss / 1024, events, log, scan, events / scan, matches, sg))
EOF
done
done
# the baseline: fixed strings, every value against every line (no parsing, no fields, no CIDRs)
for LOG in dns conn; do for r in 1 2; do
	N=$EV; [ "$LOG" = conn ] && N=$CV
	/usr/bin/time -f "%e s %M KB" grep -F -c -f "$T/values.txt" "$T/$LOG.log" > "$T/grep.out" 2> "$T/grep.err"
	echo "grep -F -f ($LOG): $(cat "$T/grep.out") matching lines in $(cut -d' ' -f1 "$T/grep.err") s ($(awk '{printf "%.0f", $3/1024}' "$T/grep.err") MB peak RSS) = $(awk -v e="$N" '{printf "%.0f", e/$1}' "$T/grep.err") lines/s"
done; done
