#!/bin/sh
# The library graph is layered (docs/ARCHITECTURE.md): scripts/check-layers passes on the
# tree, and fails on a copy with a link, an include and an outside header out of place.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
check="$here/scripts/check-layers"
python3 "$check" "$here/src"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$here/src" "$tmp/src"
echo 'target_link_libraries(kz_net PUBLIC kz_mqtt)' >> "$tmp/src/net/CMakeLists.txt"
printf '#include "node/node_listen.h"\n' >> "$tmp/src/mqtt/mqtt_codec.c"
printf '#include <sqlite3.h>\n' >> "$tmp/src/trust/label.c"
if python3 "$check" "$tmp/src" > "$tmp/out"; then
	echo "FAIL: check-layers passed a tree with violations"; exit 1
fi
cat "$tmp/out"
for want in "kz_net (layer 3) links kz_mqtt" "mqtt (layer 4) includes node/node_listen.h" "trust includes <sqlite3.h>"; do
	grep -qF "$want" "$tmp/out" || { echo "FAIL: not reported: $want"; exit 1; }
done
echo "PASS: layering"
