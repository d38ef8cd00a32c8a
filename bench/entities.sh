#!/bin/bash
# The entity picture's costs (issue 20 targets, BENCHMARKS.md "Entities"): memory per live
# position-only entity, updates/s applied with N live entities (JSON decoded as the service
# does, and applied alone), and the time to write every entity as the API's JSON (a snapshot
# for a new stream, before the network). Runs `kizuna bench entities` ROUNDS times.
# Usage: bench/entities.sh [KIZUNA] [entities] [updates] [rounds]
set -eu
KZ=${1:-$(dirname "$0")/../build/src/cli/kizuna}
N=${2:-100000} U=${3:-2000000} ROUNDS=${4:-3}
echo "# $KZ bench entities --entities $N --updates $U ($ROUNDS rounds), $(nproc) cores"
for r in $(seq "$ROUNDS"); do
	echo "## round $r"
	"$KZ" bench entities --entities "$N" --updates "$U"
done
