#!/usr/bin/env bash
# Builds every fuzz target, then runs each for SECONDS (default 60) and prints one summary
# line per target. Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#
#   fuzz/run.sh              # 60 s per target
#   fuzz/run.sh 600          # 10 minutes per target
#   fuzz/run.sh 600 stun_roundtrip stream_framing
#   FUZZ_ARGS="-max_len=65600" fuzz/run.sh 600   # extra libFuzzer flags (here: 64 KiB inputs)
#
# The corpus (fuzz/corpus/TARGET) is seeded from the RFC 5769 vectors the first time and kept
# between runs; crashes land in fuzz/artifacts/TARGET/ and each run's log in
# fuzz/artifacts/TARGET.log. Exits non-zero if any target crashed.
set -uo pipefail
cd "$(dirname "$0")"

secs="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build || exit 1

vectors=../crates/turn-proto/tests/vectors
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    if [ -z "$(ls -A "corpus/$t")" ]; then
        for v in "$vectors"/*.bin; do
            # stream_framing reads its first byte as a chunking seed.
            { [ "$t" = stream_framing ] && printf '\x07'; cat "$v"; } > "corpus/$t/seed-$(basename "$v")"
        done
    fi
    log="artifacts/$t.log"
    echo "=== $t: ${secs}s"
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        ${FUZZ_ARGS:-} > "$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    units=$(find "corpus/$t" -type f | wc -l)
    if [ "$rc" -ne 0 ]; then
        failed+=("$t")
        grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" | head -20
        line="$t: FAILED (exit $rc) after ${execs:-?} execs; see fuzz/$log"
    else
        line="$t: ${execs:-?} execs in ${secs}s (${rate:-?}/s), corpus $units inputs"
    fi
    echo "$line"
    summary+=("$line")
done

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
[ "${#failed[@]}" -eq 0 ]
