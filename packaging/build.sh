#!/usr/bin/env bash
# Builds the one-folder desktop app with PyInstaller (dist/cadence/) and checks that it starts: --help, the model
# catalog, and the window offscreen. Not part of CI (the folder is ~820 MB); run it after packaging/install.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check '.[packaging]'
pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/cadence.spec
app=dist/cadence/cadence
"$app" --help >/dev/null
"$app" models list >/dev/null
QT_QPA_PLATFORM=offscreen timeout 300 "$app" --screenshot build/bundle-screenshot.png
test -s build/bundle-screenshot.png
echo "built and started: $app ($(du -sh dist/cadence | cut -f1)); screenshot: build/bundle-screenshot.png"
