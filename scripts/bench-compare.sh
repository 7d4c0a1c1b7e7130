#!/bin/sh
# Runs the Node/Centrifuge/Go comparison of BENCHMARKS.md: builds
# primus-bench (its own module, bench/) into a temporary directory and runs
# "primus-bench compare" from the repository root (which builds
# cmd/primus-server and the Centrifuge peer bench/centrifuge, starts Redis
# and two nodes of each stack per scenario, and writes bench-results/). A
# full run (3 runs of S1-S5, stacks node,centrifuge,go,floor) takes about
# 45-50 minutes and rewrites the results section of BENCHMARKS.md; with
# -quick (one short run, a few minutes) it writes bench-results/quick.* only.
#
#   scripts/bench-compare.sh            # full comparison, updates BENCHMARKS.md
#   scripts/bench-compare.sh -quick     # smoke run
#   scripts/bench-compare.sh -quick -scenarios S1
#   scripts/bench-compare.sh -scenarios S1,S2 -runs 1 -stacks node,centrifuge,go
#
# Measure on a quiet machine: the servers, Redis and the load generator
# share the cores (the load average is recorded in the results).
set -eu
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go -C bench build -o "$dir/primus-bench" ./cmd/primus-bench
update="-update=BENCHMARKS.md"
for a in "$@"; do
	case "$a" in -quick | --quick | -quick=true | --quick=true) update="" ;; esac
done
"$dir/primus-bench" compare $update "$@"
