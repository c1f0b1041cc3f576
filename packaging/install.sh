#!/usr/bin/env bash
# Installs Cadence on a fresh Debian machine: system packages (apt, when root), a virtual environment in .venv,
# the Python dependencies (llama-cpp-python builds from source: 4-15 min on 2 cores the first time; pip caches
# the wheel) and the embedded models (assembled and verified by sha256 in the user cache).
# Environment: PYTHON (default python3.11), CADENCE_EXTRAS (pip extras, default "test"),
#              CADENCE_SKIP_APT=1 to skip apt, CMAKE_ARGS for llama.cpp (e.g. -DGGML_CUDA=on on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
EXTRAS=${CADENCE_EXTRAS:-test}
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

say "pip: installing Cadence [$EXTRAS] (the first llama-cpp-python build takes 4-15 minutes)"
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"
python -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"

say "models: installing and verifying the embedded defaults"
cadence models install --defaults
say "done: activate with '. .venv/bin/activate', then run 'cadence'"
