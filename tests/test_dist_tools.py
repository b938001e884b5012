"""The distribution checks (tools/check_dist.py, tools/check_portable.py) and the build's refusal
of unportable flags (CMakeLists.txt): each one fails on the mistake it exists for. The
check_portable and CMake tests compile small files, so they need g++, objdump / nm and cmake
and are skipped without them."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"


def _tool(name: str) -> ModuleType:
    path = TOOLS / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"no {path} (not a source checkout)")
    spec = importlib.util.spec_from_file_location(f"_fastcnn_{name}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look the module up
    spec.loader.exec_module(mod)
    return mod


# ---- check_dist -----------------------------------------------------------------------------

GOOD_SDIST = ["PKG-INFO", "pyproject.toml", "CMakeLists.txt", "README.md", "CHANGELOG.md",
              "LICENSE",
              "python/fastcnn/__init__.py", "python/fastcnn/py.typed", "python/fastcnn/_cpu.pyi",
              "python/fastcnn/_cuda.pyi", "python/fastcnn/data_files/digits.npz",
              "csrc/bindings/module_cpu.cpp", "csrc/bindings/module_cuda.cpp",
              "csrc/cpu/gemm.cpp", "tests/test_version.py"]
TRACKED = {"csrc/bindings/module_cpu.cpp", "csrc/bindings/module_cuda.cpp", "csrc/cpu/gemm.cpp",
           "python/fastcnn/__init__.py", "tests/test_version.py"}


def _sdist(names: list[str]) -> list[str]:
    return [f"fastcnn-1.2.3/{n}" for n in names]


def test_check_dist_sdist() -> None:
    cd = _tool("check_dist")
    assert cd.check_sdist_names(_sdist(GOOD_SDIST), "1.2.3", TRACKED) == []
    # a file the build needs
    probs = cd.check_sdist_names(_sdist([n for n in GOOD_SDIST if n != "CMakeLists.txt"]),
                                 "1.2.3", TRACKED)
    assert len(probs) == 1 and "CMakeLists.txt" in probs[0]
    # a tracked source left out
    probs = cd.check_sdist_names(_sdist([n for n in GOOD_SDIST if n != "csrc/cpu/gemm.cpp"]),
                                 "1.2.3", TRACKED)
    assert any("csrc/cpu/gemm.cpp" in p for p in probs)
    # build output, results, caches
    for junk in ("python/fastcnn/_cpu.cpython-311-x86_64-linux-gnu.so",
                 "python/fastcnn/__pycache__/ops.cpython-311.pyc", "build/dev/build.ninja",
                 "benchmarks/latest/results.md", "tests/.hypothesis/examples/x", ".ci/run"):
        probs = cd.check_sdist_names(_sdist([*GOOD_SDIST, junk]), "1.2.3", TRACKED)
        assert len(probs) == 1 and junk in probs[0], (junk, probs)
    # the wrong top folder
    assert cd.check_sdist_names(["fastcnn-9/x", *_sdist(GOOD_SDIST)], "1.2.3", TRACKED)


WHEEL = "fastcnn-1.2.3-cp311-cp311-manylinux_2_34_x86_64.whl"
GOOD_WHEEL = ["fastcnn/__init__.py", "fastcnn/_cpu.cpython-311-x86_64-linux-gnu.so",
              "fastcnn/_cuda.cpython-311-x86_64-linux-gnu.so", "fastcnn/data_files/digits.npz",
              "fastcnn.libs/libgomp-24e2ab19.so.1.0.0", "fastcnn-1.2.3.dist-info/METADATA"]
PACKAGE = {"fastcnn/__init__.py", "fastcnn/data_files/digits.npz"}


def test_check_dist_wheel() -> None:
    cd = _tool("check_dist")
    assert cd.check_wheel_names(WHEEL, GOOD_WHEEL, "1.2.3", PACKAGE, True, False) == []
    # not repaired: a linux tag, libgomp not vendored
    probs = cd.check_wheel_names(WHEEL.replace("manylinux_2_34", "linux"),
                                 [n for n in GOOD_WHEEL if "libgomp" not in n], "1.2.3",
                                 PACKAGE, True, False)
    assert len(probs) == 2 and "manylinux" in probs[0] and "libgomp" in probs[1]
    assert cd.check_wheel_names(WHEEL.replace("manylinux_2_34", "linux"),
                                [n for n in GOOD_WHEEL if "libgomp" not in n], "1.2.3",
                                PACKAGE, True, True) == []
    # the CUDA module asked for and missing; not asked for: fine
    no_cuda = [n for n in GOOD_WHEEL if "_cuda" not in n]
    probs = cd.check_wheel_names(WHEEL, no_cuda, "1.2.3", PACKAGE, True, False)
    assert len(probs) == 1 and "CUDA" in probs[0]
    assert cd.check_wheel_names(WHEEL, no_cuda, "1.2.3", PACKAGE, False, False) == []
    # a package file missing, a stray file, a cache, the wrong version
    probs = cd.check_wheel_names(WHEEL, [n for n in GOOD_WHEEL if "digits" not in n], "1.2.3",
                                 PACKAGE, True, False)
    assert len(probs) == 1 and "digits.npz" in probs[0]
    probs = cd.check_wheel_names(WHEEL, [*GOOD_WHEEL, "tests/test_x.py"], "1.2.3", PACKAGE,
                                 True, False)
    assert len(probs) == 1 and "outside" in probs[0]
    probs = cd.check_wheel_names(WHEEL, [*GOOD_WHEEL, "fastcnn/__pycache__/x.pyc"], "1.2.3",
                                 PACKAGE, True, False)
    assert len(probs) == 1 and "caches" in probs[0]
    assert cd.check_wheel_names(WHEEL, GOOD_WHEEL, "1.2.4", PACKAGE, True, False)


# ---- check_portable -------------------------------------------------------------------------

def _need(*tools: str) -> None:
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip(f"needs {t}")


HEADER = """
#include <vector>
__attribute__((noinline)) inline float total(const std::vector<float>& v) {
  float s = 0; for (float x : v) s += x * x; return s; }
"""
SOURCE = """
#include "h.h"
float f_{n}(const std::vector<float>& v) {{ return total(v); }}
void scale_{n}(float* x, int n) {{ for (int i = 0; i < n; ++i) x[i] *= 2.0f; }}
"""


def _objects(tmp: Path, base_flags: list[str], shared_inline: bool = False,
             base_source: str | None = None) -> Path:
    """A fake CMake tree: one ISA object (csrc/cpu/avx2, -mavx2 -mfma) and one baseline object
    compiled with ``base_flags`` (from ``base_source`` when given); with ``shared_inline`` both
    define the same inline function."""
    (tmp / "h.h").write_text(HEADER if shared_inline else "#include <vector>\n"
                             "static float total(const std::vector<float>& v) { return v[0]; }\n")
    isa_dir = tmp / "build/CMakeFiles/fastcnn_core.dir/csrc/cpu/avx2"
    base_dir = tmp / "build/CMakeFiles/fastcnn_core.dir/csrc/cpu"
    isa_dir.mkdir(parents=True)
    for name, d, flags in (("isa", isa_dir, ["-mavx2", "-mfma"]), ("base", base_dir, base_flags)):
        src = tmp / f"{name}.cpp"
        text = base_source if name == "base" and base_source else SOURCE.format(n=name)
        src.write_text(text)
        subprocess.run(["g++", "-O3", "-c", *flags, str(src), "-o", str(d / f"{name}.cpp.o")],
                       check=True, cwd=tmp)
    return tmp / "build"


def test_check_portable_passes_baseline(tmp_path: Path) -> None:
    _need("g++", "objdump", "nm")
    cp = _tool("check_portable")
    assert cp.check(_objects(tmp_path, []), out=io.StringIO()) == 0


FLOOR = "#include <cmath>\nfloat r(float x) { return std::floor(x); }\n"  # SSE4.1: roundss


@pytest.mark.parametrize(("flags", "source"), [(["-mavx2"], None), (["-march=haswell"], None),
                                               (["-mavx512f"], None), (["-msse4.1"], FLOOR)])
def test_check_portable_finds_isa_code_in_baseline(tmp_path: Path, flags: list[str],
                                                   source: str | None,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _need("g++", "objdump", "nm")
    cp = _tool("check_portable")
    assert cp.check(_objects(tmp_path, flags, base_source=source)) == 1
    assert "NOT PORTABLE" in capsys.readouterr().out


def test_check_portable_finds_shared_inline_function(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _need("g++", "objdump", "nm")
    cp = _tool("check_portable")
    assert cp.check(_objects(tmp_path, [], shared_inline=True)) == 1
    out = capsys.readouterr().out
    assert "inline / template function total(" in out


def test_check_portable_needs_isa_and_baseline_objects(tmp_path: Path) -> None:
    _need("objdump", "nm")
    cp = _tool("check_portable")
    assert cp.check(tmp_path, out=io.StringIO()) == 2


def test_beyond_baseline_decoder() -> None:
    cp = _tool("check_portable")
    assert cp.beyond_baseline([0xC5, 0xFC, 0x28, 0xC1], "vmovaps %ymm1,%ymm0") == "VEX"
    assert cp.beyond_baseline([0x62, 0xF1, 0x7C, 0x48, 0x28, 0xC1], "vmovaps %zmm1,%zmm0") == "EVEX"
    assert cp.beyond_baseline([0x0F, 0x28, 0xC1], "movaps %xmm1,%xmm0") is None
    assert cp.beyond_baseline([0x8F, 0xC0], "pop %rax") is None
    assert cp.beyond_baseline([0xF3, 0x0F, 0xBC, 0xC0], "tzcnt %eax,%eax") is None  # rep bsf
    assert cp.beyond_baseline([0xF3, 0x0F, 0xB8, 0xC7], "popcnt %edi,%eax") is not None
    assert cp.beyond_baseline([0xF2, 0x0F, 0x38, 0xF0, 0xC1], "crc32b %cl,%eax") is not None


# ---- CMake refuses unportable flags ---------------------------------------------------------

@pytest.mark.parametrize("env", [{"CXXFLAGS": "-O2 -march=native"}, {"CXXFLAGS": "-mavx2"},
                                 {"LDFLAGS": "-flto=auto"}, {"CXXFLAGS": "-O2 -ffast-math"},
                                 {"CXXFLAGS": "-Ofast"}])
def test_cmake_refuses_unportable_flags(tmp_path: Path, env: dict[str, str]) -> None:
    """The check runs right after project(), before Python or pybind11 are looked for."""
    _need("cmake", "g++")
    if not (ROOT / "CMakeLists.txt").is_file():
        pytest.skip("not a source checkout")
    run = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path / "b"),
                          "-DFASTCNN_CUDA=OFF"], env={**os.environ, **env},
                         capture_output=True, text=True)
    assert run.returncode != 0
    flag = next(iter(env.values())).split()[-1]
    assert f"refusing {flag}" in run.stderr.replace("\n", " "), run.stderr
