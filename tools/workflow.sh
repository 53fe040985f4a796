#!/usr/bin/env bash
# The OASIS workflow end to end, every output under one run folder:
#   data -> train the VQ-VAE-2 -> reconstruct the test split (SSIM, PSNR) -> extract
#   the code maps -> train the top and the bottom PixelSNAIL prior -> generate new
#   slices (and bottom codes resampled for test slices) -> loss curves and a summary.
#
#   bash tools/workflow.sh                 # default data: Debian's mricron-data T1 template
#   bash tools/workflow.sh /path/to/OASIS  # a folder holding keras_png_slices_{train,validate,test}
#
# Environment: VQVAE2_MINUTES (the training budget in all, default 27: 45% VQ-VAE-2,
# 20% top prior, 35% bottom prior; the rest of the run takes about 2 minutes),
# VQVAE2_CONFIG (VQ-VAE-2 configuration, default small), VQVAE2_PRIOR_CONFIG (default
# small), VQVAE2_BATCH (default 16), VQVAE2_SAMPLES (default 16), VQVAE2_RUN (the run
# folder, default runs/<dataset>). A run folder that exists is resumed: each training
# continues from its checkpoint.
# Dead-code restart (a code unused for 20 steps is re-seeded from the batch) keeps the
# code books from collapsing onto one code early in training, which a short budget cannot afford.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${VQVAE2_BUILD_DIR:-$root/build}"
minutes="${VQVAE2_MINUTES:-27}"
config="${VQVAE2_CONFIG:-small}"
prior_config="${VQVAE2_PRIOR_CONFIG:-small}"
batch="${VQVAE2_BATCH:-16}"
samples="${VQVAE2_SAMPLES:-16}"
start=$(date +%s)
say() { echo "workflow [$(($(date +%s) - start)) s]: $*"; }
share() { awk -v m="$minutes" -v f="$1" 'BEGIN { printf "%.3f", m * f }'; }

"$root/tools/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
programs=(vqvae2_import_nifti vqvae2_train_vqvae vqvae2_reconstruct vqvae2_extract_codes vqvae2_train_prior
  vqvae2_generate)
say "building ${programs[*]}"
cmake --build "$build" -j "$(nproc)" --target "${programs[@]}" >/dev/null
bin="$build/examples"

if [ $# -ge 1 ]; then
  data="$1"
  name="$(basename "$data")"
else
  name="colin27_mricron"
  data="$root/runs/data/$name"
  volume=/usr/share/mricron/templates/ch2bet.nii.gz
  if [ ! -d "$data/keras_png_slices_train" ]; then
    say "importing $volume (Debian mricron-data) into $data"
    "$bin/vqvae2_import_nifti" --input "$volume" --output "$data" --prefix case_901
  fi
fi
run="${VQVAE2_RUN:-$root/runs/$name}"
mkdir -p "$run"/{vqvae,codes,prior_top,prior_bottom,generated}

say "1/6 training the '$config' VQ-VAE-2 on $data for $(share 0.45) minutes (batch $batch) -> $run/vqvae"
"$bin/vqvae2_train_vqvae" --data "$data" --out "$run/vqvae" --config "$config" --batch "$batch" \
  --minutes "$(share 0.45)" --epochs 100000 --resume auto --lr 1e-3 --dead-code-restart 20

say "2/6 reconstructing the test split"
"$bin/vqvae2_reconstruct" --checkpoint "$run/vqvae/checkpoint.bin" --data "$data" --split test \
  --out "$run/reconstruct_test"

say "3/6 extracting the code maps"
for split in train validate test; do
  "$bin/vqvae2_extract_codes" --checkpoint "$run/vqvae/checkpoint.bin" --data "$data" --split "$split" \
    --out "$run/codes/$split.codes"
done

say "4/6 training the top prior ('$prior_config') for $(share 0.20) minutes"
"$bin/vqvae2_train_prior" --hier top --config "$prior_config" --codes "$run/codes/train.codes" \
  --val-codes "$run/codes/validate.codes" --out "$run/prior_top" --batch "$batch" --minutes "$(share 0.20)" \
  --epochs 100000 --resume auto

say "5/6 training the bottom prior ('$prior_config') for $(share 0.35) minutes"
"$bin/vqvae2_train_prior" --hier bottom --config "$prior_config" --codes "$run/codes/train.codes" \
  --val-codes "$run/codes/validate.codes" --out "$run/prior_bottom" --batch "$batch" --minutes "$(share 0.35)" \
  --epochs 100000 --resume auto

say "6/6 generating $samples new slices, and new bottom codes for 4 test slices"
gen=("$bin/vqvae2_generate" --vqvae "$run/vqvae/checkpoint.bin" --top "$run/prior_top/checkpoint.bin"
  --bottom "$run/prior_bottom/checkpoint.bin")
"${gen[@]}" --out "$run/generated" --n "$samples" --batch 8 | tee "$run/generated/summary.txt"
"${gen[@]}" --out "$run/generated" --data "$data" --from-test --count 4 --variants 3 >/dev/null

say "done"
last_row() {
  if [ "$(wc -l <"$1/loss_epochs.csv" 2>/dev/null || echo 0)" -ge 2 ]; then
    tail -n 1 "$1/loss_epochs.csv"
  elif [ -f "$1/last_validation.json" ]; then
    echo "none finished; at the end of the budget $(cat "$1/last_validation.json")"
  else
    echo "none finished (the budget ended inside the first epoch)"
  fi
}
cat <<EOF

=== vqvae2 workflow summary: $name ($(($(date +%s) - start)) s) ===
VQ-VAE-2 ($config):       $(grep -o '"ssim_mean": [0-9.]*' "$run/reconstruct_test/summary.json" | sed 's/"ssim_mean"/test SSIM/'), \
$(grep -o '"psnr_mean_db": [0-9.]*' "$run/reconstruct_test/summary.json" | sed 's/"psnr_mean_db": /PSNR /') dB
top prior ($prior_config):    last epoch $(last_row "$run/prior_top")
                          (columns: $(head -n 1 "$run/prior_top/loss_epochs.csv"))
bottom prior ($prior_config): last epoch $(last_row "$run/prior_bottom")
samples:                  $(head -n 1 "$run/generated/summary.txt")

pictures:
  $run/reconstruct_test/grid.png               test slices over their reconstructions
  $run/generated/grid.png                      new slices sampled from the priors
  $run/generated/resampled_bottom_grid.png     test slices: original, reconstruction, bottom codes resampled
  $run/vqvae/loss_curve.png  $run/prior_top/loss_curve.png  $run/prior_bottom/loss_curve.png
EOF
