#!/usr/bin/env bash
# CI: build the sdist and the wheel as a release would, install the wheel into a fresh virtual
# environment outside the source tree, and use it from there. This proves that what ships
# works on its own: the package files, py.typed, the `superposition` entry point and the demo
# extra, with no help from the checkout (no src/ on the path, no editable install).
#
#   .ci/wheel_smoke.sh                          # builds with the python on PATH
#   PYTHON=.venv/bin/python .ci/wheel_smoke.sh  # builds with a venv's python (needs `build`,
#                                               # in the test extra)
#
# The fresh environment is made with python3 and removed on exit. Offline apart from the
# package index: torch==2.13.0 (the CPU build; never a bare `torch`, which pulls CUDA) first,
# then the wheel with the demo extra. About a minute on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PYTHON="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONPATH

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
fail() {
  echo "wheel smoke test: $*" >&2
  exit 1
}

# --- build: the sdist, then the wheel from the sdist (so the sdist must be complete) ---
"$PYTHON" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || {
  cat "$WORK/build.log" >&2
  fail "python -m build failed (log above)"
}
shopt -s nullglob
sdists=("$WORK"/dist/superposition-*.tar.gz)
wheels=("$WORK"/dist/superposition-*-py3-none-any.whl)
shopt -u nullglob
[[ ${#sdists[@]} -eq 1 && ${#wheels[@]} -eq 1 ]] ||
  fail "expected one sdist and one pure-Python wheel in dist/, got: $(ls "$WORK/dist")"
SDIST="${sdists[0]}"
WHEEL="${wheels[0]}"
echo "built $(basename "$SDIST") ($(du -k "$SDIST" | cut -f1) KiB), $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB)"

# --- what the archives hold (python's tarfile/zipfile: no dependence on tar/unzip flavours) ---
python3 - "$SDIST" "$WHEEL" <<'PY'
import sys
import tarfile
import zipfile

sdist, wheel = sys.argv[1:]
with tarfile.open(sdist) as tar:
    # Strip the "superposition-<version>/" prefix.
    names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
with zipfile.ZipFile(wheel) as zf:
    wheel_names = set(zf.namelist())

problems = []
for need in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md",
             "src/superposition/__init__.py", "src/superposition/py.typed",
             "src/superposition/cli/__init__.py", "tests/conftest.py"):
    if need not in names:
        problems.append(f"sdist lacks {need}")
if not any(n.startswith("tests/properties/") for n in names):
    problems.append("sdist lacks tests/properties/")
# Build outputs and local state must never ship (hatchling follows .gitignore).
for junk in (".venv/", "docs/_build/", "dist/", ".hypothesis/", "superposition-out/"):
    if any(n.startswith(junk) for n in names):
        problems.append(f"sdist contains {junk}")
if any("__pycache__" in n for n in names | wheel_names):
    problems.append("an archive contains __pycache__")

for need in ("superposition/__init__.py", "superposition/py.typed", "superposition/cli/__init__.py",
             "superposition/explorer/static/explorer.js",
             "superposition/explorer/static/explorer.css",
             "superposition/explorer/static/explorer.html"):
    if need not in wheel_names:
        problems.append(f"wheel lacks {need}")
dist_info = {n.split("/", 1)[0] for n in wheel_names if ".dist-info/" in n}
if len(dist_info) != 1:
    problems.append(f"wheel has {len(dist_info)} .dist-info folders")
else:
    (info,) = dist_info
    with zipfile.ZipFile(wheel) as zf:
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        metadata = zf.read(f"{info}/METADATA").decode()
    if "superposition = superposition.cli:main" not in entry_points:
        problems.append(f"wheel's entry_points.txt lacks the console script:\n{entry_points}")
    if f"{info}/licenses/LICENSE" not in wheel_names:
        problems.append("wheel lacks dist-info/licenses/LICENSE")
    if "Provides-Extra: demo" not in metadata:
        problems.append("wheel's METADATA lacks the demo extra")
if not all(n.startswith(("superposition/", info)) for n in wheel_names):
    problems.append("wheel holds files outside superposition/ and its dist-info")

if problems:
    sys.exit("wheel smoke test: " + "\n  ".join(["archive contents:", *problems]))
print(f"sdist: {len(names)} entries; wheel: {len(wheel_names)} entries; contents as expected")
PY

# --- a fresh environment, and a working directory that is not the checkout ---
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q --no-compile torch==2.13.0 >"$WORK/pip.log" 2>&1 &&
  "$WORK/venv/bin/pip" install -q --no-compile "$WHEEL[demo]" >>"$WORK/pip.log" 2>&1 || {
  grep -v "is ignored" "$WORK/pip.log" >&2
  fail "installing the wheel failed (log above)"
}
mkdir "$WORK/elsewhere"
cd "$WORK/elsewhere"

"$WORK/venv/bin/superposition" --help >"$WORK/help.txt" ||
  fail "'superposition --help' exited with status $?"
grep -q "reproduce" "$WORK/help.txt" ||
  fail "'superposition --help' does not list the reproduce command: $(cat "$WORK/help.txt")"

"$WORK/venv/bin/python" - "$ROOT" "$WORK/venv" <<'PY'
import sys
from pathlib import Path

root, venv = (Path(p).resolve() for p in sys.argv[1:])
import superposition as sp

package = Path(sp.__file__).resolve().parent
if not package.is_relative_to(venv):
    sys.exit(f"wheel smoke test: imported superposition from {package}, not from {venv}")
if not (package / "py.typed").is_file():
    sys.exit(f"wheel smoke test: {package} has no py.typed")

# A tiny probe on the shipped MiniLM: one row per token ([CLS] hello world [SEP], padding
# dropped), one column per neuron of the layer-0 MLP, both counted without the library.
model, tokenizer = sp.load_model()
acts = sp.ActivationProbe(model, layer=0).run(["hello world"])
expected = (len(tokenizer("hello world")["input_ids"]), model.config.intermediate_size)
if tuple(acts.values.shape) != expected:
    sys.exit(f"wheel smoke test: probe gave {tuple(acts.values.shape)}, expected {expected}")
# The explorer's page is assembled from files shipped in the wheel.
units = sp.collect_units(sp.ActivationProbe(model, layer=0), ["hello world"], top_k=2, samples=1)
page = units.explore(Path("explorer.html")).read_text("utf-8")
if "DecompressionStream" not in page or "{{" in page or "hello" not in page:
    sys.exit("wheel smoke test: the explorer page was not assembled from its static files")
print(f"superposition {sp.__version__} from {package}: import, py.typed, probe {expected}, "
      "explorer ok")
PY
echo "wheel smoke test passed"
