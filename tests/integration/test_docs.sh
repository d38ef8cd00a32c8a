#!/bin/bash
# Docs stay true to the code: the config man page lists exactly the directive table, and
# every directive in the example config is one the node accepts.
set -u
KZ=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
fail=0
diff <("$KZ" help config --man) <(sed -n '/^\.SH DIRECTIVES/,/^\.SH SEE ALSO/p' "$ROOT/man/kizuna.conf.5" | sed '1d;$d') \
	&& echo "PASS man/kizuna.conf.5 matches the directive table" \
	|| { echo "FAIL man/kizuna.conf.5 is stale: run scripts/gen-man-config"; fail=1; }
"$KZ" serve --check --config "$ROOT/docs/kizuna.conf.example" >/dev/null \
	&& echo "PASS docs/kizuna.conf.example is valid" || { echo "FAIL docs/kizuna.conf.example"; fail=1; }
for c in serve pub sub bench store query audit policy ca enroll stix taxii help version; do
	"$KZ" help $c >/dev/null || { echo "FAIL help $c"; fail=1; }
done
echo "$(( fail ? 0 : 3 )) passed, $fail failed"
exit $fail
