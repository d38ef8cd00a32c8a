#!/bin/bash
# Docs stay true to the code: the config man page lists exactly the directive table, every
# directive in the example config is one the node accepts, and check_docs.py holds README,
# docs/*.md and kizuna(1) to the commands, verbs and options the binary has.
set -u
KZ=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
fail=0
diff <("$KZ" help config --man) <(sed -n '/^\.SH DIRECTIVES/,/^\.SH SEE ALSO/p' "$ROOT/man/kizuna.conf.5" | sed '1d;$d') \
	&& echo "PASS man/kizuna.conf.5 matches the directive table" \
	|| { echo "FAIL man/kizuna.conf.5 is stale: run scripts/gen-man-config"; fail=1; }
"$KZ" serve --check --config "$ROOT/docs/kizuna.conf.example" >/dev/null \
	&& echo "PASS docs/kizuna.conf.example is valid" || { echo "FAIL docs/kizuna.conf.example"; fail=1; }
for c in serve pub sub bench store query audit policy ca enroll stix taxii cluster help version; do
	"$KZ" help $c >/dev/null || { echo "FAIL help $c"; fail=1; }
done
# README, docs/*.md and the man page name only commands, verbs and options the binary has;
# the man synopsis lists every command and verb; the example config is the directive table
/usr/bin/python3 "$ROOT/tests/integration/check_docs.py" "$KZ" "$ROOT" || fail=1
echo "$(( fail ? 0 : 4 )) passed, $fail failed"
exit $fail
