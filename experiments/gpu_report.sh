#!/usr/bin/env bash
# The accelerator report on a GPU machine with no internet that has jax (with its CUDA plugin),
# flax, optax, orbax-checkpoint, numpy, pillow, absl-py, PyYAML and torch, but not TensorFlow,
# tfds, decord, ml_collections or imageio-ffmpeg (as this workplace's H200 machines).
#
# 1. Here, with the package registry:
#      experiments/gpu_report.sh fetch DIR PEER_SCRIPT
#    puts the wheels the report needs and such a machine lacks (ml_collections as locked,
#    imageio-ffmpeg with its ffmpeg binary; Python 3.12, x86-64) and a copy
#    of the PyTorch peer script (e.g. torch_pix2pix.py) into DIR. For the device tool, DIR is a
#    folder of the checkout that git ignores (`echo /.gpu/ >> .git/info/exclude`, DIR=.gpu),
#    named in the call's `carry`.
# 2. There, in the repository root:
#      experiments/gpu_report.sh run DIR OUTPUT.md [accelerator-report flags]
#    installs those wheels and the repository (pip --no-index --no-deps, no build isolation:
#    nothing is downloaded) into $PYTHON's environment (default python3), prints the device and
#    versions, and runs `pix2pix-benchmark accelerator-report --output OUTPUT.md --peer
#    DIR/<peer>` (under 8 minutes on one GPU: no measurement starts after 6). Extra flags go to
#    the report (the CPU dry run: --size 32 --ngf 4 --ndf 4 --num-downs 5 --batches 1 ...).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# imageio-ffmpeg 0.8.1's wheel (ffmpeg 9) is 65 MiB, over what the device tool carries (64 MiB
# with the checkout); 0.6.0's (ffmpeg 7) is 29 MiB, and the package only asks it for the binary.
WHEELS=("ml_collections==$(grep -i '^ml[-_]collections==' requirements.lock | cut -d= -f3)"
        "imageio-ffmpeg==0.6.0")

usage() {
  sed -n '2,19p' "$0" >&2
  exit 2
}

case "${1:-}" in
  fetch)
    [[ $# -eq 3 ]] || usage
    dir=$2 peer=$3
    [[ -f $peer ]] || { echo "error: $peer: no such peer script" >&2; exit 1; }
    mkdir -p "$dir"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$dir" "${WHEELS[@]}"
    cp "$peer" "$dir/"
    ls -l "$dir"
    ;;
  run)
    [[ $# -ge 3 ]] || usage
    dir=$2 output=$3
    shift 3
    peers=("$dir"/*.py)
    [[ -f ${peers[0]} ]] || { echo "error: $dir has no peer script (run fetch first)" >&2; exit 1; }
    export PYTHONUNBUFFERED=1
    "$PYTHON" -m pip install -q --no-index --no-deps --no-cache-dir "$dir"/*.whl
    "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation -e .
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    fi
    "$PYTHON" -c "import jax; print(jax.__version__, jax.devices())"
    "$PYTHON" -m pix2pix_jax.tools.bench.main accelerator-report --output "$output" \
      --peer "${peers[0]}" "$@"
    cat "$output"
    ;;
  *)
    usage
    ;;
esac
