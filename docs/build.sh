#!/usr/bin/env bash
# Build the documentation site exactly as CI does: from scratch, offline, every example in
# examples/ executed (a failing example fails the build), warnings as errors.
#
#   docs/build.sh                          # with the python on PATH
#   PYTHON=.venv/bin/python docs/build.sh  # with a virtual environment's python
#
# Needs the docs extra: pip install -e ".[docs]". Output: docs/_build/html/index.html, with
# MathJax served from docs/_build/html/_static/mathjax (no CDN: formulas render offline).
# SPHINX_OFFLINE=0 docs/build.sh links to the Python/NumPy/PyTorch/transformers docs when
# their hosts can be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
export SPHINX_OFFLINE="${SPHINX_OFFLINE:-1}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# Incremental Sphinx builds do not repeat the warnings of unchanged pages, and sphinx-gallery
# skips unchanged examples even when the library under them changed: start clean.
rm -rf docs/_build docs/auto_examples docs/_generated
"${PYTHON:-python3}" -m sphinx -W --keep-going -b html docs docs/_build/html "$@"
# Formulas must render offline: MathJax from _static, never a CDN; with Chromium installed, a
# page with formulas is rendered headless and every formula must come out typeset.
"${PYTHON:-python3}" docs/check_math.py docs/_build/html
