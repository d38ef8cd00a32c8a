#!/bin/sh
# The library graph is layered (docs/ARCHITECTURE.md): scripts/check-layers passes on the
# tree, and fails on a copy with a link, an include and an outside header out of place.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
check="$here/scripts/check-layers"
build=$(cd "$(dirname "$1")/../.." && pwd) # $1: BUILD/src/cli/kizuna
python3 "$check" "$here/src" --build "$build"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$here/src" "$tmp/src"
echo 'target_link_libraries(kz_net PUBLIC kz_mqtt)' >> "$tmp/src/net/CMakeLists.txt"
printf '#include "node/node_listen.h"\n' >> "$tmp/src/mqtt/mqtt_codec.c"
printf '#include <sqlite3.h>\n' >> "$tmp/src/trust/label.c"
seq 1 1001 | sed 's|^|// |' > "$tmp/src/base/kz_big.c"
if python3 "$check" "$tmp/src" > "$tmp/out"; then
	echo "FAIL: check-layers passed a tree with violations"; exit 1
fi
cat "$tmp/out"
for want in "kz_net (layer 3) links kz_mqtt" "mqtt (layer 4) includes node/node_listen.h" "trust includes <sqlite3.h>" \
	"base/kz_big.c: 1001 lines, over 1000"; do
	grep -qF "$want" "$tmp/out" || { echo "FAIL: not reported: $want"; exit 1; }
done
# a library exporting a name without its module's prefix
mkdir -p "$tmp/build"
(cd "$build" && find src -name 'libkz_*.a' | while read -r a; do mkdir -p "$tmp/build/$(dirname "$a")"; cp "$a" "$tmp/build/$a"; done)
printf 'int send_all(int x) { return x; }\n' > "$tmp/bad.c"
cc -c -o "$tmp/bad.o" "$tmp/bad.c"
ar rcs "$tmp/build/src/net/libkz_net.a" "$tmp/bad.o"
if python3 "$check" "$here/src" --build "$tmp/build" > "$tmp/out2"; then
	echo "FAIL: check-layers passed a library exporting send_all"; exit 1
fi
cat "$tmp/out2"
grep -qF "libkz_net.a exports send_all: names of net start with net_" "$tmp/out2" || { echo "FAIL: send_all not reported"; exit 1; }
echo "PASS: layering"
