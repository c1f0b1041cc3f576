#!/usr/bin/env bash
# Installs Cadence on a fresh Debian machine: system packages (apt, when root), a virtual environment in .venv,
# the Python dependencies (llama-cpp-python builds from source: 4-15 min on 2 cores the first time; pip caches
# the wheel) and the embedded models (assembled and verified by sha256 in the user cache).
# Environment: PYTHON (default python3.11), CADENCE_EXTRAS (pip extras, default "test"; with CUDA
#              "test,nemo,kokoro"), CADENCE_SKIP_APT=1 to skip apt, CMAKE_ARGS for a CPU llama.cpp build,
#              CADENCE_GPU=cuda for the GPU build (packaging/cuda.sh: llama.cpp for this GPU's architecture, torch
#              with CUDA, the torch engines' extras and the torch Kokoro voice), CADENCE_DRY_RUN=1 to print the
#              plan and install nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
GPU=${CADENCE_GPU:-cpu}
case "$GPU" in
  cpu) EXTRAS=${CADENCE_EXTRAS:-test} ;;
  cuda) EXTRAS=${CADENCE_EXTRAS:-test,nemo,kokoro}
        # shellcheck source=packaging/cuda.sh
        . packaging/cuda.sh
        cuda_plan ;;
  *) echo "cadence install: CADENCE_GPU must be cpu or cuda, got '$GPU'" >&2; exit 2 ;;
esac
APT_PACKAGES=(
  build-essential cmake                                   # llama-cpp-python builds from source
  libportaudio2                                           # sounddevice
  pulseaudio pulseaudio-utils libasound2-plugins          # virtual microphone/speaker for tests
  xvfb xauth x11-utils x11-apps                           # a real X server for desktop tests (xwd: screenshots)
  libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
  libxcb-randr0 libxcb-render-util0 libxcb-image0 libfontconfig1 libdbus-1-3   # Qt's xcb platform
  desktop-file-utils                                      # checks packaging/cadence.desktop
  espeak-ng                                               # a flat robotic voice for `cadence bench turns`
)

say() { printf '\n==> %s\n' "$*"; }

if [[ "$GPU" == cuda ]]; then
  cuda_describe
fi
if [[ "${CADENCE_DRY_RUN:-0}" == 1 ]]; then
  [[ "$GPU" == cpu ]] && printf 'CPU build plan\n  llama.cpp: CPU (CMAKE_ARGS: %s)\n' "${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"
  printf '  extras: %s\n(dry run: nothing installed)\n' "$EXTRAS"
  exit 0
fi

if [[ "${CADENCE_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]]; then
      say "apt: installing ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "Not root: please install these Debian packages first: sudo apt-get install ${missing[*]}" >&2
      exit 1
    fi
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check --upgrade pip wheel setuptools
if [[ "$GPU" == cuda ]]; then
  say "CUDA: torch with CUDA and llama.cpp for $CUDA_ARCH"
  cuda_build
fi

say "pip: installing Cadence [$EXTRAS] (the first llama-cpp-python build takes 4-15 minutes)"
if [[ "$GPU" == cuda ]]; then
  export CMAKE_ARGS="$GPU_CMAKE_ARGS"  # llama-cpp-python is already built; only a version change would rebuild it
else
  export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"
fi
python -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"

say "models: installing and verifying the embedded defaults"
cadence models install --defaults
if [[ "$GPU" == cuda ]]; then
  say "CUDA: the torch Kokoro voice's weights, built from the embedded int8 ONNX"
  cadence models install kokoro-82m-pth
  say "CUDA: what was built and where each engine will run"
  cadence doctor --compute cuda || true
fi
say "done: activate with '. .venv/bin/activate', then run 'cadence'"
