#!/usr/bin/env bash
# Proves that the README's two commands work on a fresh Debian 12 machine:
# builds a minimal Debian root (mmdebstrap, variant minbase: essential packages
# and apt, nothing else), copies a clean clone of this repository's HEAD into
# it, and runs there, as root and with nothing installed by hand:
#   1. the README's test command      bash tools/test.sh
#   2. the README's main job, short   VQVAE2_MINUTES=1 bash tools/workflow.sh
#   3. a find_package(vqvae2) consumer against `cmake --install` of that build.
# Exits non-zero and names the step when any step fails. Run as root.
#
#   bash tools/fresh-machine-check.sh            # HEAD of this repository
#   VQVAE2_FRESH_KEEP=1 bash tools/fresh-machine-check.sh   # keep the root for inspection
#
# Environment: VQVAE2_FRESH_SUITE (default bookworm), VQVAE2_FRESH_DIR (where the
# root is made, default a new folder under /var/tmp), VQVAE2_FRESH_MINUTES
# (the main job's budget, default 1).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
suite="${VQVAE2_FRESH_SUITE:-bookworm}"
minutes="${VQVAE2_FRESH_MINUTES:-1}"
start=$(date +%s)
step_name="setup"
say() { echo "fresh-machine-check [$(($(date +%s) - start)) s]: $*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "fresh-machine-check: must run as root (it builds a Debian root with mmdebstrap and chroots into it)." >&2
  exit 2
fi
for tool in mmdebstrap git; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    say "installing $tool"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$tool" >/dev/null
  fi
done

target="${VQVAE2_FRESH_DIR:-$(mktemp -d /var/tmp/vqvae2-fresh.XXXXXX)}"
mounted=()
cleanup() {
  local rc=$?
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -R "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true; done
  if [ "${VQVAE2_FRESH_KEEP:-0}" = "1" ]; then
    say "root kept at $target"
  else
    rm -rf --one-file-system "$target"
  fi
  if [ $rc -ne 0 ]; then
    echo "fresh-machine-check: FAILED at step '$step_name' (exit $rc)." >&2
  fi
  exit $rc
}
trap cleanup EXIT

# The new root uses the same Debian archive as this machine's apt (its sources
# file), so it sees exactly the package registry a fresh machine here would.
sources=""
for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
  if [ -s "$f" ] && grep -qv '^\s*#' "$f"; then sources="$f" && break; fi
done

step_name="mmdebstrap ($suite, minbase)"
say "$step_name -> $target"
rm -rf --one-file-system "$target"
if [ -n "$sources" ]; then
  mmdebstrap --quiet --variant=minbase --mode=root "$suite" "$target" "$sources"
else
  mmdebstrap --quiet --variant=minbase --mode=root "$suite" "$target"
fi

step_name="copy a clean clone of HEAD"
say "$step_name ($(git -C "$repo" rev-parse --short HEAD))"
git clone --quiet --no-local --no-hardlinks "$repo" "$target/root/vqvae2"
rm -rf "$target/root/vqvae2/.git"  # a downloaded release has no git metadata either

cp /etc/resolv.conf "$target/etc/resolv.conf"
mount -t proc proc "$target/proc" && mounted+=("$target/proc")
mount --rbind /dev "$target/dev" && mount --make-rslave "$target/dev" && mounted+=("$target/dev")
mount -t sysfs sys "$target/sys" && mounted+=("$target/sys")
mount -t tmpfs tmp "$target/tmp" && mounted+=("$target/tmp")

in_root() {
  chroot "$target" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 TERM=dumb "$@"
}

run_step() {
  step_name="$1"
  shift
  local t0=$(date +%s)
  say "step '$step_name': $*"
  in_root /bin/bash -c "cd /root/vqvae2 && $*"
  say "step '$step_name' passed in $(($(date +%s) - t0)) s"
}

run_step "README test command" "bash tools/test.sh"
run_step "README main job (VQVAE2_MINUTES=$minutes)" "VQVAE2_MINUTES=$minutes bash tools/workflow.sh"
run_step "find_package(vqvae2) consumer" \
  "cmake --install build --prefix /opt/vqvae2 >/dev/null && \
   cmake -S tests/consumer -B /tmp/consumer -DCMAKE_PREFIX_PATH=/opt/vqvae2 >/dev/null && \
   cmake --build /tmp/consumer -j \$(nproc) >/dev/null && /tmp/consumer/consumer"
step_name="done"
say "all steps passed in $(($(date +%s) - start)) s"
