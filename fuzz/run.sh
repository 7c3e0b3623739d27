#!/usr/bin/env bash
# Fuzz every target for SECONDS each (default 60), one after another.
#
#   fuzz/run.sh [--smoke] [SECONDS] [TARGET...]
#
# Installs cargo-fuzz (pinned) if it is missing. Works on a stable toolchain: libFuzzer's
# sanitizer and coverage flags are nightly features, which RUSTC_BOOTSTRAP=1 unlocks.
# Every target is built once, into fuzz/target (incremental on the next run), and its
# binary is run directly, so an edit made while a long run goes on is not picked up.
# For each target it first replays fuzz/regressions/<target>/ (inputs that once failed),
# then fuzzes starting from fuzz/seeds/<target>/ plus the growing corpus in
# fuzz/corpus/<target>/. A crash, panic, failed property, leak or timeout fails the run;
# its input is saved under fuzz/artifacts/<target>/ and its log under fuzz/artifacts/logs/.
#
# --smoke (./test.sh): 10 s per target unless SECONDS is given, a fresh corpus in
# fuzz/artifacts/smoke/ (so a local corpus never makes CI and local runs differ).
# Exit status: 0 when every target ran clean, 1 otherwise (all targets still run).
set -uo pipefail

CARGO_FUZZ_VERSION=0.13.2

smoke=0
if [ "${1:-}" = "--smoke" ]; then
    smoke=1
    shift
fi
seconds="${1:-$([ "$smoke" = 1 ] && echo 10 || echo 60)}"
shift || true
case "$seconds" in
    ''|*[!0-9]*) echo "usage: $0 [--smoke] [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$fuzz_dir")"
cd "$root"
export RUSTC_BOOTSTRAP=1
# cargo-fuzz builds into fuzz/target unless told otherwise; keep it there (its own cache).
unset CARGO_TARGET_DIR

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" || exit 1
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir "$fuzz_dir")
fi

echo "== building ${targets[*]}"
build_start=$SECONDS
cargo fuzz build --fuzz-dir "$fuzz_dir" || exit 1
echo "== built in $((SECONDS - build_start)) s"
bin_dir="$fuzz_dir/target/$(rustc -vV | sed -n 's/^host: //p')/release"
# What `cargo fuzz run` sets for the binaries it starts.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

dict_for() {
    case "$1" in
        sse*) echo "$fuzz_dir/dicts/sse.dict" ;;
        spiffe*) echo "$fuzz_dir/dicts/spiffe.dict" ;;
        config) echo "$fuzz_dir/dicts/yaml.dict" ;;
        *) echo "$fuzz_dir/dicts/json.dict" ;;
    esac
}

logs="$fuzz_dir/artifacts/logs"
mkdir -p "$logs"
failed=()
summary=()
for t in "${targets[@]}"; do
    log="$logs/$t.log"
    mkdir -p "$fuzz_dir/artifacts/$t"
    run=("$bin_dir/$t" -artifact_prefix="$fuzz_dir/artifacts/$t/")
    regressions="$fuzz_dir/regressions/$t"
    if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
        echo "== $t: replaying $(ls "$regressions" | wc -l) regression input(s)"
        if ! "${run[@]}" -runs=0 "$regressions" >"$log" 2>&1; then
            grep -E -A 1 "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "$log" | head -n 6
            echo "== $t: a regression input still fails (log: $log)"
            failed+=("$t")
            summary+=("$t: FAILED (regression still reproduces)")
            continue
        fi
    fi
    if [ "$smoke" = 1 ]; then
        corpus="$fuzz_dir/artifacts/smoke/$t"
        rm -rf "$corpus"
    else
        corpus="$fuzz_dir/corpus/$t"
    fi
    mkdir -p "$corpus"
    echo "== $t: fuzzing for ${seconds}s"
    if "${run[@]}" "$corpus" "$fuzz_dir/seeds/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -dict="$(dict_for "$t")" -print_final_stats=1 >>"$log" 2>&1; then
        status="ok"
    else
        status="FAILED"
        failed+=("$t")
        grep -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|Test unit written to" "$log" | head -n 5
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)"
    rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)"
    ft="$(grep -o 'ft: [0-9]*' "$log" | tail -n 1)"
    summary+=("$t: $status, ${execs:-?} execs, ${rate:-?} exec/s, ${cov:-cov: ?}, ${ft:-ft: ?}")
    echo "== ${summary[-1]} (log: $log)"
done

echo
echo "== summary (${seconds}s per target)"
printf '   %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "== failing: ${failed[*]}; inputs in $fuzz_dir/artifacts/<target>/"
    exit 1
fi
