#!/bin/bash
# The adapters' decode rates on one core (issue 21 targets, BENCHMARKS.md "Adapters"): AIS
# sentences (checksum, reassembly, decoding, the entity update's JSON) and Mode S messages
# (AVR hex, parity, decoding, CPR, the entity update), from the recorded samples in
# ../shared/data/tracks. Runs `kizuna bench adapters` ROUNDS times.
# Usage: bench/adapters.sh [KIZUNA] [messages] [rounds] [shared dir]
set -eu
KZ=${1:-$(dirname "$0")/../build/src/cli/kizuna}
N=${2:-3000000} ROUNDS=${3:-3} SHARED=${4:-$(dirname "$0")/../../shared}
echo "# $KZ bench adapters --messages $N --shared $SHARED ($ROUNDS rounds), $(nproc) cores"
for r in $(seq "$ROUNDS"); do
	echo "## round $r"
	"$KZ" bench adapters --messages "$N" --shared "$SHARED"
done
