#!/usr/bin/env bash
# Smoke test of an installed fastcnn wheel, as a user without a compiler would run it: from a
# directory outside the source tree (the installed package is imported, not python/fastcnn),
# with every compiler on PATH (and CC / CXX / CUDACXX) replaced by a stub that records the call
# and fails, so nothing compiles at run time. Checks the version (fastcnn.__version__ ==
# fastcnn --version == the installed metadata), prints `fastcnn info`, trains one epoch and runs
# a subset of the test suite. .ci/wheel runs it in a fresh venv; cibuildwheel on every wheel.
#
#   bash tools/wheel_smoke.sh PROJECT_DIR [--cuda]
#
# PROJECT_DIR is the source checkout (for its tests/); --cuda: the CUDA module must be inside,
# with its architectures listed. Needs python (the venv's, first on PATH) with the wheel,
# pytest and hypothesis installed.
set -euo pipefail
project="$(cd "${1:?usage: wheel_smoke.sh PROJECT_DIR [--cuda]}" && pwd)"
want_cuda=0
[[ "${2:-}" == "--cuda" ]] && want_cuda=1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# compiler stubs, first on PATH
mkdir -p "$work/nocc"
log="$work/compiler-calls.log"
: > "$log"
for cc in cc c++ gcc g++ clang clang++ nvcc cmake ninja make ld x86_64-linux-gnu-gcc \
          x86_64-linux-gnu-g++; do
  printf '#!/bin/sh\necho "%s $*" >> "%s"\necho "wheel_smoke: %s was called" >&2\nexit 1\n' \
    "$cc" "$log" "$cc" > "$work/nocc/$cc"
  chmod +x "$work/nocc/$cc"
done
export PATH="$work/nocc:$PATH" CC="$work/nocc/cc" CXX="$work/nocc/c++" \
       CUDACXX="$work/nocc/nvcc"
# bytecode in the temporary folder: shared by this run's processes, written nowhere else
export PYTHONPYCACHEPREFIX="$work/pycache" MPLBACKEND=Agg
cd "$work"

echo "== version and info =="
cli_version="$(fastcnn --version)"
FASTCNN_CLI_VERSION="$cli_version" FASTCNN_WANT_CUDA="$want_cuda" python - <<'PY'
import importlib.metadata as md
import os

import fastcnn

installed = md.version("fastcnn")
print(f"fastcnn {fastcnn.__version__} from {os.path.dirname(fastcnn.__file__)}")
assert "site-packages" in fastcnn.__file__, f"not the installed package: {fastcnn.__file__}"
assert fastcnn.__version__ == installed, (fastcnn.__version__, installed)
assert os.environ["FASTCNN_CLI_VERSION"] == f"fastcnn {installed}", os.environ["FASTCNN_CLI_VERSION"]
info = fastcnn.info()
if os.environ["FASTCNN_WANT_CUDA"] == "1":
    assert info["cuda_built"], f"the CUDA module is not in this wheel: {info}"
    assert info["cuda_archs"], f"the CUDA module lists no architectures: {info}"
    from fastcnn import _cuda
    assert _cuda.__version__ == installed, (_cuda.__version__, installed)
PY
fastcnn info

echo "== fastcnn train --epochs 1 =="
fastcnn train --epochs 1 > train.log
tail -n 3 train.log

echo "== smoke tests =="
# the version, the device probes, the model API, the input checks of every op and the element-
# wise kernels on every ISA this CPU has (about 30 s)
python -m pytest -q -p no:cacheprovider "$project/tests/test_version.py" \
  "$project/tests/test_device.py" "$project/tests/test_model.py" \
  "$project/tests/test_input_handling.py" "$project/tests/test_ops_eltwise.py"

if [[ -s "$log" ]]; then
  echo "wheel_smoke: a compiler was called:" >&2
  cat "$log" >&2
  exit 1
fi
echo "wheel_smoke: OK (no compiler called)"
