#!/usr/bin/env bash
# Set up goodhartlab in ./.venv. Usage: scripts/setup.sh [--dev]
#   --dev  also installs the test tools and Debian's Chromium (the report's browser test).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "goodhartlab needs Python >= 3.11; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, pinned to its CPU build: resolved as a dependency on a fresh machine it would pull the CUDA
# stack. The CPU wheel comes from pip's configured sources when they hold it, else from PyTorch's CPU index.
if ! .venv/bin/python -m pip install --quiet "torch==2.13.0+cpu" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
fi
if [ "${1:-}" = "--dev" ]; then
    .venv/bin/python -m pip install --quiet -e ".[rl,atari,llm,dev]"
    if ! command -v chromium >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
        else
            echo "Chromium is missing: run 'sudo apt-get install chromium' for the report test" >&2
            exit 1
        fi
    fi
else
    .venv/bin/python -m pip install --quiet -e ".[rl,llm]"
fi
