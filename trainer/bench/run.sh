#!/usr/bin/env bash
# The training benchmark of issue #5: our trainer against a PyTorch port of the same model.
#
# Usage: trainer/bench/run.sh [--rounds R] [--threads T] [--epochs E] [--run-dir DIR]
#
# Each round runs E autoencoder and E GAN epochs with the Rust trainer (examples/bench_train.rs,
# which keeps its split in DIR), then with trainer/bench/torch_reference.py on that split, so
# load drifts hit both alike. It prints the medians, their ratios against the goals (AE epoch
# <= 0.8x torch, GAN epoch <= 0.5x torch, Rust peak <= 400 MB), then replays a Rust trace in
# torch. Exits 0 only when every goal is met and the numbers agree.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=3
threads=2
epochs=2
run_dir=runs/bench-uci
while (($#)); do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --epochs) epochs="$2"; shift 2 ;;
        --run-dir) run_dir="$2"; shift 2 ;;
        -h|--help) sed -n '2,10s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument \`$1\` (see --help)" >&2; exit 2 ;;
    esac
done

# ${CARGO} lets a test put a stand-in for cargo in front of the Rust side.
cargo="${CARGO:-cargo}"
reference=trainer/bench/torch_reference.py
python3 -c 'import torch, safetensors, numpy' 2>/dev/null || {
    echo "run.sh: python3 cannot import torch, safetensors and numpy (trainer/bench/README.md)" >&2
    exit 2
}
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

bench_train() {
    "$cargo" run --release -q -p medgan-train --example bench_train -- "$@"
}

# One JSON object on the last line of stdout, or the run fails naming what it printed.
last_json_line() {
    local out="$1" who="$2"
    tail -n 1 "$out" | python3 -c 'import json, sys; json.loads(sys.stdin.read())' 2>/dev/null || {
        echo "run.sh: $who printed no JSON line; its output was:" >&2
        cat "$out" >&2
        exit 1
    }
    tail -n 1 "$out"
}

# torch's OpenMP threads spin while waiting: on a busy machine its times collapse (README.md).
warn_if_busy() {
    local load cores
    load="$(cut -d ' ' -f 1 /proc/loadavg)"
    cores="$(nproc)"
    echo "load $1: $load on $cores cores"
    if awk -v load="$load" -v cores="$cores" 'BEGIN { exit !(load > cores) }'; then
        echo "run.sh: warning: load $load exceeds $cores cores; timings are not meaningful" >&2
    fi
}

warn_if_busy before
"$cargo" build --release -q -p medgan-train --example bench_train
mkdir -p "$(dirname "$run_dir")"
for round in $(seq 1 "$rounds"); do
    echo "round $round/$rounds: rust" >&2
    bench_train --ae-epochs "$epochs" --gan-epochs "$epochs" --keep "$run_dir" \
        --threads "$threads" >"$scratch/out"
    line="$(last_json_line "$scratch/out" "bench_train")"
    echo "$line" >>"$scratch/rust.jsonl"
    split_dir="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["run_dir"])' "$line")"
    echo "round $round/$rounds: torch" >&2
    python3 "$reference" time --data "$split_dir/train.medgan.safetensors" \
        --holdout "$split_dir/holdout.medgan.safetensors" --ae-epochs "$epochs" \
        --gan-epochs "$epochs" --threads "$threads" >"$scratch/out"
    last_json_line "$scratch/out" "torch_reference.py" >>"$scratch/torch.jsonl"
done
warn_if_busy after

if python3 - "$scratch/rust.jsonl" "$scratch/torch.jsonl" "$rounds" "$epochs" "$threads" <<'EOF'
import json
import statistics
import sys

rust_file, torch_file, rounds, epochs, threads = sys.argv[1:]
rust = [json.loads(line) for line in open(rust_file)]
torch = [json.loads(line) for line in open(torch_file)]


def median_epoch(runs, key):
    return statistics.median(t for run in runs for t in run[key])


def median_peak(runs):
    return statistics.median(run["peak_rss_mb"] for run in runs)


print(f"\n{rounds} rounds of {epochs} AE + {epochs} GAN epochs, {threads} threads; medians:")
print(f"{'':<22}{'Rust':>10}{'torch':>10}{'ratio':>8}   goal")
met = []
for label, key, goal in (
    ("autoencoder epoch s", "autoencoder_epoch_s", 0.8),
    ("GAN epoch s", "gan_epoch_s", 0.5),
):
    ours, theirs = median_epoch(rust, key), median_epoch(torch, key)
    ratio = ours / theirs
    met.append(ratio <= goal)
    verdict = "met" if met[-1] else "NOT MET"
    print(f"{label:<22}{ours:>10.3f}{theirs:>10.3f}{ratio:>7.2f}x   <= {goal}x: {verdict}")
ours, theirs = median_peak(rust), median_peak(torch)
met.append(ours <= 400)
verdict = "met" if met[-1] else "NOT MET"
print(f"{'peak RSS MB':<22}{ours:>10.0f}{theirs:>10.0f}{ours / theirs:>7.2f}x   "
      f"Rust <= 400 MB: {verdict}")
sys.exit(0 if all(met) else 1)
EOF
then goals_met=true; else goals_met=false; fi

echo
echo "numeric check: the Rust trainer's trace replayed in torch"
bench_train --trace "$scratch/trace.safetensors" >"$scratch/out"
if python3 "$reference" check --trace "$scratch/trace.safetensors" --threads "$threads"; then
    check_passed=true
else
    check_passed=false
fi

failures=()
$goals_met || failures+=("a goal is not met")
$check_passed || failures+=("the numeric check failed")
if ((${#failures[@]})); then
    printf 'run.sh: %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "all goals met, numbers agree"
