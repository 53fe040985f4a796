#!/usr/bin/env bash
# The OASIS workflow end to end: data -> train the VQ-VAE-2 -> reconstruct the
# test split with SSIM -> grid, loss curves and metrics under runs/.
#
#   bash tools/workflow.sh                 # default data: Debian's mricron-data T1 template
#   bash tools/workflow.sh /path/to/OASIS  # a folder holding keras_png_slices_{train,validate,test}
#
# Environment: VQVAE2_MINUTES (training budget, default 9), VQVAE2_CONFIG (default small),
# VQVAE2_BATCH (default 16), VQVAE2_RUN (output folder, default runs/<dataset>).
# Dead-code restart (a code unused for 20 steps is re-seeded from the batch) keeps the
# code books from collapsing onto one code early in training, which a short budget cannot afford.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${VQVAE2_BUILD_DIR:-$root/build}"
minutes="${VQVAE2_MINUTES:-9}"
config="${VQVAE2_CONFIG:-small}"
batch="${VQVAE2_BATCH:-16}"

"$root/tools/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target vqvae2_import_nifti vqvae2_train_vqvae vqvae2_reconstruct

if [ $# -ge 1 ]; then
  data="$1"
  name="$(basename "$data")"
else
  name="colin27_mricron"
  data="$root/runs/data/$name"
  volume=/usr/share/mricron/templates/ch2bet.nii.gz
  if [ ! -d "$data/keras_png_slices_train" ]; then
    echo "workflow: importing $volume (Debian mricron-data) into $data"
    "$build/examples/vqvae2_import_nifti" --input "$volume" --output "$data" --prefix case_901
  fi
fi
run="${VQVAE2_RUN:-$root/runs/$name}"
mkdir -p "$run"

echo "workflow: training the '$config' VQ-VAE-2 on $data for $minutes minutes (batch $batch) -> $run"
"$build/examples/vqvae2_train_vqvae" --data "$data" --out "$run" --config "$config" --batch "$batch" \
  --minutes "$minutes" --epochs 100000 --resume auto --lr 1e-3 --dead-code-restart 20

echo "workflow: reconstructing the test split"
"$build/examples/vqvae2_reconstruct" --checkpoint "$run/checkpoint.bin" --data "$data" --split test \
  --out "$run/reconstruct_test"

echo "workflow: results in $run"
echo "  loss curves:      $run/loss_curve.png"
echo "  reconstructions:  $run/reconstruct_test/grid.png"
echo "  SSIM / PSNR:      $run/reconstruct_test/summary.json"
cat "$run/reconstruct_test/summary.json"
