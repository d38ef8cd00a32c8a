"""Docs drift check (issue 16): every `kizuna COMMAND [VERB] [--option]` that README.md,
docs/*.md and the man page show must be one the binary accepts, as its own help says; every
command of `kizuna help` has a man-page synopsis line and every verb there is a real one;
docs/kizuna.conf.example is the directive table. Prints PASS/FAIL lines."""
import glob, os, re, subprocess, sys

KZ, ROOT = sys.argv[1], sys.argv[2]
fails = []


def helptext(*args):
    r = subprocess.run([KZ, "help", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return r.stdout + r.stderr


top = helptext()
commands = re.findall(r"^  ([a-z]+)\s{2,}", top, re.M)
helps = {c: helptext(c) for c in commands}
bench_sub = {}


def verbs_of(cmd):
    """The verbs a command's usage lines name: `kizuna CMD VERB` or `kizuna CMD (a | b)`."""
    text = helps[cmd]
    vs = set()
    for alt in re.findall(r"kizuna %s \(([^)]*)\)" % cmd, text):
        vs |= {v.strip() for v in alt.split("|")}
    vs |= set(re.findall(r"^(?:usage:)?\s*kizuna %s ([a-z][a-z0-9-]*)\b" % cmd, text, re.M))
    return vs


verbs = {c: verbs_of(c) for c in commands}
verbs = {c: v for c, v in verbs.items() if v}
common = "--host --port --data --cafile --cert --key --protocol --id --qos --keepalive --help --url --collection"


def strip_troff(s):
    s = re.sub(r"\\f[BIRP]", "", s)
    return s.replace("\\-", "-").replace("\\(em", "-")


sources = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) + \
          [os.path.join(ROOT, "man", "kizuna.1")]
def code_spans(path):
    """(line number, text) of what is code: fenced or indented blocks and `inline` spans in
    Markdown, bold (\\fB...\\fR) runs in the man page. Prose may say "kizuna ca is"."""
    out, fenced = [], False
    for lineno, line in enumerate(open(path).read().splitlines(), 1):
        if path.endswith(".1"):
            for run in re.findall(r"\\fB(.*?)\\f[RP]", line):
                out.append((lineno, strip_troff(run)))
            if line.startswith(".B kizuna"):
                out.append((lineno, line[3:]))
            continue
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            out.append((lineno, line))
        else:
            out += [(lineno, span) for span in re.findall(r"`([^`]+)`", line)]
    return out


seen = 0
for path in sources:
    for lineno, line in code_spans(path):
        for m in re.finditer(r"(?:^|[\s`(/$])kizuna ([a-z]+)((?: +[^ |;`&)]+)*)", line):
            cmd, rest = m.group(1), m.group(2).split()
            if cmd not in helps:
                continue
            seen += 1
            where = "%s:%d" % (os.path.relpath(path, ROOT), lineno)
            if cmd in verbs and rest and re.fullmatch(r"[a-z][a-z0-9-]*", rest[0]) and rest[0] not in verbs[cmd] \
                    and not (cmd == "help"):
                fails.append("%s: `kizuna %s %s`: no such verb (kizuna help %s has %s)" %
                             (where, cmd, rest[0], cmd, ", ".join(sorted(verbs[cmd]))))
            for w in rest:
                o = re.match(r"(--[a-z][a-z-]*)", w)
                if o and o.group(1) not in helps[cmd] and o.group(1) not in common:
                    fails.append("%s: `kizuna %s ... %s`: not in `kizuna help %s`" % (where, cmd, o.group(1), cmd))

man = strip_troff(open(os.path.join(ROOT, "man", "kizuna.1")).read())
synopsis = man[man.index(".SH SYNOPSIS"):man.index(".SH DESCRIPTION")]
for c in commands:
    if c in ("version",):
        continue
    if ".B kizuna %s" % c not in synopsis:
        fails.append("man/kizuna.1: SYNOPSIS has no line for `kizuna %s`" % c)
for c, alt in re.findall(r"\.B kizuna ([a-z]+)\n\(([^)]*)\)", synopsis):
    named = {x.strip().split()[0] for x in re.split(r"\s\|\s", alt)}
    for v in named:
        if c in verbs and v not in verbs[c]:
            fails.append("man/kizuna.1: SYNOPSIS `kizuna %s %s`: no such verb" % (c, v))
    if c in verbs:
        for v in verbs[c] - named:
            fails.append("man/kizuna.1: SYNOPSIS `kizuna %s` lacks the verb %s" % (c, v))

ex = open(os.path.join(ROOT, "docs", "kizuna.conf.example")).read().splitlines()
table = ["#" + l for l in helptext("config").splitlines()[4:]]
body = ex[2:2 + len(table)]
if body != table:
    fails.append("docs/kizuna.conf.example is stale: run scripts/gen-config-example")

# example node configurations (docs/cluster/) name only directives the node knows
known = set(re.findall(r"^  (\S+)\s+default", helptext("config"), re.M))
for conf in glob.glob(os.path.join(ROOT, "docs", "cluster", "kizuna*.conf")):
    for i, l in enumerate(open(conf), 1):
        l = l.split("#", 1)[0].strip()
        if l and l.split("=", 1)[0].strip() not in known:
            fails.append("%s:%d: unknown directive %s" % (os.path.relpath(conf, ROOT), i, l.split("=", 1)[0].strip()))

for f in fails:
    print("FAIL " + f)
print("%s checked %d command references in %d files" % ("PASS" if not fails else "FAIL", seen, len(sources)))
sys.exit(1 if fails else 0)
