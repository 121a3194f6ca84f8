#!/usr/bin/env bash
# Set up goodhartlab in ./.venv. Usage: scripts/setup.sh [--dev] [--bench]
#   --dev    also installs the test tools, the dist extra (Ray, MLflow's client, TensorBoard, pandas, pyarrow: CPU
#            wheels only) and Debian's Chromium (the report's browser test).
#   --bench  also installs the benchmarks' baselines (DeepMind's gridworlds as packaged for Gymnasium) and the dist
#            extra (Ray, for benchmarks/bench_ray.py).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "goodhartlab needs Python >= 3.11; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

# pip, quiet but for real problems: some machines' pip configuration names index folders that do not exist,
# and pip warns about each of them on every call ("Location ... is ignored").
pip() {
    .venv/bin/python -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

pip install --quiet --upgrade pip
# torch first, pinned to its CPU build: resolved as a dependency on a fresh machine it would pull the CUDA
# stack. The CPU wheel comes from pip's configured sources when they hold it, else from PyTorch's CPU index.
if ! .venv/bin/python -m pip install --quiet "torch==2.13.0+cpu" 2>/dev/null; then
    pip install --quiet torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
fi
dev=false bench=false
for flag in "$@"; do
    case "$flag" in
        --dev) dev=true ;;
        --bench) bench=true ;;
        *) echo "scripts/setup.sh: unknown flag $flag; use --dev and/or --bench" >&2; exit 2 ;;
    esac
done
if $dev; then
    pip install --quiet -e ".[rl,atari,llm,dist,dev]"
    if ! command -v chromium >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
                2> >(grep -v "^debconf: " >&2)
        else
            echo "Chromium is missing: run 'sudo apt-get install chromium' for the report test" >&2
            exit 1
        fi
    fi
else
    pip install --quiet -e ".[rl,llm]"
fi
if $bench; then
    pip install --quiet -e ".[dist]"
    pip install --quiet --no-deps safety-gridworlds-gymnasium==2.0.4 pygame==2.6.1
fi
