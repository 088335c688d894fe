#!/usr/bin/env bash
# Every test and gate of the project, in the order a failure is cheapest to see.
# This is the README's test command and what CI (.ci/run) runs. Needs root for the network
# namespace test; installs missing packages first (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
bash scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "dependency direction: the sans-IO crates link no runtime or sockets"
for crate in turn-proto credentials; do
    if cargo tree -p "$crate" -e normal --prefix none | grep -E '^(tokio|mio|socket2) ' ; then
        echo "$crate must not depend on tokio, mio or socket2" >&2
        exit 1
    fi
done
# What ships to app developers never links the shared secrets' code (STYLE.md §2).
if cargo tree -p client-sdk -e normal --prefix none | grep -E '^(credentials|edge|control-plane|rtn) ' ; then
    echo "client-sdk must not depend on credentials, edge, control-plane or rtn" >&2
    exit 1
fi

step "cargo test (unit, RFC vectors, sans-IO server, interop, security)"
cargo test --workspace --locked -- --test-threads=2

step "web SDK: install, build, demo bundle up to date, type checks and unit tests"
(cd web-sdk && npm ci --no-audit --no-fund --loglevel=error && npm run build && npm run check-bundle && npm test)

step "benchmark smoke runs (small and unoptimised: they prove the tools run, not speed)"
cargo run --locked -q -p bench --bin proxy_info -- --requests 300 --concurrency 8 --seconds 60

step "relay benchmark smoke: our edge vs coturn vs the null relay at a tenth of the size (no timing assertions)"
cargo build --release --locked -q -p bench -p cloudproxy
bash bench/compare.sh --smoke
bash bench/idle_allocations.sh --smoke

step "fuzz targets build, and a 20 s smoke run each"
bash fuzz/run.sh 20

step "all gates passed"
