#!/usr/bin/env bash
# Runs the Rust sampler benchmark and the Python reference side by side, one stage per process
# (so each peak RSS is that stage's own), and prints rows/s, peak RSS and the Rust/Python ratios.
#
#   sampler/bench/run.sh [-n ROWS] [--threads K] [--model DIR]
#
# The bundle: --model, else models/DEFAULT's bundle, else an untrained bundle of medGAN's shape
# (915 codes) written by make_bench_bundle.py into target/bench-bundle.
set -euo pipefail
cd "$(dirname "$0")/../.."
rows=1000000 threads=2 model=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) rows="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
target="${CARGO_TARGET_DIR:-target}"
if [ -z "$model" ]; then
  if [ -f models/DEFAULT ]; then
    model="models/$(head -n1 models/DEFAULT | tr -d '[:space:]')"
  else
    model="$target/bench-bundle"
    [ -f "$model/manifest.json" ] || python3 sampler/bench/make_bench_bundle.py "$model" >/dev/null
  fi
fi
cargo build --release -q -p medgan-sample --example bench
bench="$target/release/examples/bench"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
stages="inference sample wide-parquet-zstd:3 wide-parquet-snappy wide-parquet-none \
long-parquet-zstd:3 long-parquet-snappy long-parquet-none list-parquet-zstd:3 \
list-parquet-snappy list-parquet-none wide-arrow-stream long-csv"
for stage in $stages; do
  "$bench" --model "$model" -n "$rows" --threads "$threads" --only "$stage" --json >>"$results"
done
for stage in inference pipeline long; do
  python3 sampler/bench/reference.py --model "$model" -n "$rows" --threads "$threads" \
    --stage "$stage" >>"$results"
done
python3 - "$results" "$model" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
rust = {r["stage"]: r for r in rows if r["impl"] == "rust"}
python = {r["stage"]: r for r in rows if r["impl"] == "python"}
first = rows[0]
print(f"model {sys.argv[2]}: {first['codes']} codes, {first['rows']} rows, "
      f"{first['threads']} threads, batch {first['batch_size']}")
print(f"{'stage':<22}{'rust rows/s':>13}{'MiB RSS':>9}{'MiB file':>10}"
      f"{'python rows/s':>15}{'MiB RSS':>9}{'speed x':>9}{'RSS x':>7}")
for stage, r in rust.items():
    line = (f"{stage:<22}{r['rows_per_s']:>13.0f}{r['peak_rss_mib']:>9.0f}"
            f"{r['bytes'] / 2**20:>10.1f}")
    p = python.get(stage)
    if p:
        line += (f"{p['rows_per_s']:>15.0f}{p['peak_rss_mib']:>9.0f}"
                 f"{r['rows_per_s'] / p['rows_per_s']:>9.2f}"
                 f"{p['peak_rss_mib'] / r['peak_rss_mib']:>7.2f}")
    print(line)
print("speed x: Rust rows/s over Python's; RSS x: Python's peak RSS over Rust's")
# The goals of issue #4, as ratios of rates measured in this same run.
rate = lambda table, stage: table.get(stage, {}).get("rows_per_s")
goals = [
    ("wide zstd, Rust over Python", rate(rust, "wide-parquet-zstd:3"),
     rate(python, "wide-parquet-zstd:3"), 3.0),
    ("wide zstd over Rust inference alone", rate(rust, "wide-parquet-zstd:3"),
     rate(rust, "inference"), 0.6),
    ("long zstd, Rust over Python", rate(rust, "long-parquet-zstd:3"),
     rate(python, "long-parquet-zstd:3"), 5.0),
]
for name, numerator, denominator, goal in goals:
    if numerator and denominator:
        ratio = numerator / denominator
        verdict = "met" if ratio >= goal else "NOT met"
        print(f"{name:<38}{ratio:>7.2f}  (goal >= {goal:g}: {verdict})")
PY
