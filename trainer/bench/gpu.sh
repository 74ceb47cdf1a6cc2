#!/usr/bin/env bash
# The GPU check of issue #5, for a machine with an NVIDIA GPU and the CUDA toolkit: builds the
# trainer with `--features cuda`, checks that a few training steps on the GPU give the CPU's
# numbers, then times GAN epochs on UCI Diabetes ($MEDGAN_DATA_DIR, default ../shared/data).
#
#   trainer/bench/gpu.sh [GAN_EPOCHS]     (default 20; the goal: 1,000 epochs within 60 s)
set -euo pipefail
cd "$(dirname "$0")/../.."
epochs=${1:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release -q -p medgan-train --features cuda --example bench_train
bench="${CARGO_TARGET_DIR:-target}/release/examples/bench_train"

# 20 autoencoder and 4 GAN steps from the same seed, batches and noise on both devices.
"$bench" --device cpu --trace "$work/cpu.safetensors"
"$bench" --device cuda --trace "$work/cuda.safetensors"
"$bench" --compare-traces "$work/cpu.safetensors" "$work/cuda.safetensors" --tolerance 1e-3

"$bench" --device cuda --ae-epochs 1 --gan-epochs "$epochs" | tail -n 1 >"$work/cuda.json"
if command -v python3 >/dev/null 2>&1; then
  python3 - "$work/cuda.json" <<'PY'
import json, statistics, sys
run = json.load(open(sys.argv[1]))
gan = run["gan_epoch_s"]
steady = gan[1:] or gan  # the first epoch includes CUDA's start-up
median = statistics.median(steady)
print(f"autoencoder epoch {run['autoencoder_epoch_s'][0]:.2f} s; GAN epoch median "
      f"{median:.3f} s over {len(steady)} epochs: 1,000 epochs in about {1000 * median:.0f} s "
      f"(goal 60 s)")
PY
else
  cat "$work/cuda.json"
fi
