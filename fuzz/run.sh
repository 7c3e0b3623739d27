#!/usr/bin/env bash
# Fuzz every target for SECONDS each (default 60), one after another.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Installs cargo-fuzz if it is missing. Works on a stable toolchain: libFuzzer's
# sanitizer and coverage flags are nightly features, which RUSTC_BOOTSTRAP=1 unlocks.
# For each target it first replays fuzz/regressions/<target>/ (inputs that once failed),
# then fuzzes starting from fuzz/seeds/<target>/ plus the growing corpus in
# fuzz/corpus/<target>/. A crash, panic, failed property, leak or timeout fails the run;
# its input is saved under fuzz/artifacts/<target>/ and its log under fuzz/artifacts/logs/.
# Exit status: 0 when every target ran clean, 1 otherwise (all targets still run).
set -uo pipefail

seconds="${1:-60}"
shift || true
case "$seconds" in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$fuzz_dir")"
cd "$root"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 1
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir "$fuzz_dir")
fi

echo "== building ${targets[*]}"
cargo fuzz build --fuzz-dir "$fuzz_dir" || exit 1

dict_for() {
    case "$1" in
        sse*) echo "$fuzz_dir/dicts/sse.dict" ;;
        spiffe*) echo "$fuzz_dir/dicts/spiffe.dict" ;;
        *) echo "$fuzz_dir/dicts/json.dict" ;;
    esac
}

logs="$fuzz_dir/artifacts/logs"
mkdir -p "$logs"
failed=()
summary=()
for t in "${targets[@]}"; do
    log="$logs/$t.log"
    regressions="$fuzz_dir/regressions/$t"
    if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
        echo "== $t: replaying $(ls "$regressions" | wc -l) regression input(s)"
        if ! cargo fuzz run --fuzz-dir "$fuzz_dir" "$t" "$regressions" -- -runs=0 >"$log" 2>&1; then
            grep -E -A 1 "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "$log" | head -n 6
            echo "== $t: a regression input still fails (log: $log)"
            failed+=("$t")
            summary+=("$t: FAILED (regression still reproduces)")
            continue
        fi
    fi
    corpus="$fuzz_dir/corpus/$t"
    mkdir -p "$corpus"
    echo "== $t: fuzzing for ${seconds}s"
    if cargo fuzz run --fuzz-dir "$fuzz_dir" "$t" "$corpus" "$fuzz_dir/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -dict="$(dict_for "$t")" -print_final_stats=1 >"$log" 2>&1; then
        status="ok"
    else
        status="FAILED"
        failed+=("$t")
        grep -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|Test unit written to" "$log" | head -n 5
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)"
    rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)"
    summary+=("$t: $status, ${execs:-?} execs, ${rate:-?} exec/s, ${cov:-cov: ?}")
    echo "== ${summary[-1]} (log: $log)"
done

echo
echo "== summary (${seconds}s per target)"
printf '   %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "== failing: ${failed[*]}; inputs in $fuzz_dir/artifacts/<target>/"
    exit 1
fi
