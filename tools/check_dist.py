#!/usr/bin/env python3
"""Checks of fastcnn's distribution files: the sdist holds what the build needs and no build
output, results or caches; the (repaired) wheel holds the package, both compiled modules and the
vendored OpenMP runtime under a manylinux tag. Prints each file's size and the wheel's tag.

Usage::

    python tools/check_dist.py sdist dist/fastcnn-0.1.0.tar.gz
    python tools/check_dist.py wheel wheelhouse/fastcnn-0.1.0-cp311-...manylinux_2_34_x86_64.whl \\
        [--cuda] [--allow-linux-tag]

``--source DIR`` (default: this checkout) is the tree the files are compared with: every file
git tracks under csrc/, python/ and tests/ must be in the sdist, every package file under
python/fastcnn in the wheel. Exit status 0 when all checks pass, 1 with the list of problems.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]

# what the build reads (relative to the sdist's top folder)
SDIST_REQUIRED = (
    "PKG-INFO", "pyproject.toml", "CMakeLists.txt", "README.md", "CHANGELOG.md", "LICENSE",
    "python/fastcnn/__init__.py", "python/fastcnn/py.typed", "python/fastcnn/_cpu.pyi",
    "python/fastcnn/_cuda.pyi", "python/fastcnn/data_files/digits.npz",
    "csrc/bindings/module_cpu.cpp", "csrc/bindings/module_cuda.cpp",
)
# build output, results, caches, environments: never in a distribution
FORBIDDEN = (
    "*.so", "*.so.*", "*.o", "*.a", "*.pyc", "*.whl", "*.tar.gz", "*/__pycache__/*",
    "*/.pytest_cache/*", "*/.hypothesis/*", "*/.ruff_cache/*", "*/.git/*", "build/*", "dist/*",
    "wheelhouse/*", "*/.venv/*", ".venv/*", "venv/*", "benchmarks/results/*",
    "benchmarks/latest/*", "benchmarks/amd-avx2/*", ".ci/*",
)
# tracked trees the sdist must carry completely
SDIST_TREES = ("csrc", "python", "tests")
WHEEL_TAG = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-(?P<py>[^-]+)-(?P<abi>[^-]+)-"
                       r"(?P<plat>[^-]+)\.whl$")


def project_version(source: Path) -> str:
    """pyproject.toml's [project] version: the one source of the version."""
    text = (source / "pyproject.toml").read_text()
    project = re.search(r"^\[project\]\n(.*?)(?=^\[)", text, flags=re.M | re.S)
    version = re.search(r'^version = "([^"]+)"', project.group(1), flags=re.M) if project else None
    if version is None:
        raise SystemExit("check_dist: pyproject.toml has no [project] version = \"...\" line")
    return version.group(1)


def tracked_files(source: Path, trees: tuple[str, ...]) -> set[str] | None:
    """The files git tracks under ``trees`` (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(source), "ls-files", "--", *trees], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {line for line in out.splitlines() if line}


def forbidden(names: list[str]) -> list[str]:
    """The names matching a FORBIDDEN pattern."""
    return [n for n in names if any(fnmatch.fnmatch(n, p) or fnmatch.fnmatch("/" + n, p)
                                    for p in FORBIDDEN)]


def check_sdist_names(names: list[str], version: str,
                      tracked: set[str] | None) -> list[str]:
    """Problems of an sdist's member list (names relative to its archive, with the top folder)."""
    problems = []
    top = f"fastcnn-{version}/"
    outside = [n for n in names if not n.startswith(top) and n != top.rstrip("/")]
    if outside:
        problems.append(f"members outside {top}: {outside[:5]}")
    rel = [n[len(top):] for n in names if n.startswith(top) and n != top]
    have = set(rel)
    missing = [r for r in SDIST_REQUIRED if r not in have]
    if missing:
        problems.append(f"missing (the build needs them): {missing}")
    if tracked is not None:
        lost = sorted(tracked - have)
        if lost:
            problems.append(f"{len(lost)} tracked files under {'/'.join(SDIST_TREES)} are not "
                            f"in the sdist, e.g. {lost[:5]}")
    bad = forbidden(rel)
    if bad:
        problems.append(f"{len(bad)} files that are build output, results or caches: {bad[:8]}")
    return problems


def check_sdist(path: Path, source: Path) -> list[str]:
    """Check an sdist archive against the source tree; print its size and file count."""
    version = project_version(source)
    with tarfile.open(path) as tf:
        members = tf.getmembers()
        names = [m.name for m in members if not m.isdir()]
        pkg_info = tf.extractfile(f"fastcnn-{version}/PKG-INFO") if (
            f"fastcnn-{version}/PKG-INFO" in names) else None
        meta = pkg_info.read().decode() if pkg_info else ""
    problems = check_sdist_names(names, version, tracked_files(source, SDIST_TREES))
    if meta and f"\nVersion: {version}\n" not in meta:
        problems.append(f"PKG-INFO does not say Version: {version}")
    size = path.stat().st_size
    print(f"sdist {path.name}: {size / 1e6:.2f} MB, {len(names)} files")
    return problems


def check_wheel_names(filename: str, names: list[str], version: str, package_files: set[str],
                      cuda: bool, allow_linux: bool) -> list[str]:
    """Problems of a wheel's file name and member list."""
    problems = []
    m = WHEEL_TAG.match(filename)
    if not m:
        return [f"{filename} is not a wheel file name (name-version-py-abi-platform.whl)"]
    if m["version"] != version:
        problems.append(f"the wheel is version {m['version']}, pyproject.toml says {version}")
    plats = m["plat"].split(".")
    if not allow_linux and not all(p.startswith("manylinux") for p in plats):
        problems.append(f"platform tag {m['plat']} is not manylinux: run auditwheel repair "
                        "(a linux_* wheel can't be uploaded to an index)")
    have = set(names)
    ext = re.compile(r"^fastcnn/_(cpu|cuda)\.cpython-[^/]+\.so$")
    mods = {ext.match(n)[1] for n in names if ext.match(n)}  # type: ignore[index]
    if "cpu" not in mods:
        problems.append("no fastcnn/_cpu.cpython-*.so: the CPU module is missing")
    if cuda and "cuda" not in mods:
        problems.append("no fastcnn/_cuda.cpython-*.so: the CUDA module is missing (was nvcc "
                        "found? FASTCNN_CUDA=ON makes a build without it fail)")
    libs = [n for n in names if n.startswith("fastcnn.libs/")]
    if not allow_linux and not any(PurePosixPath(n).name.startswith("libgomp") for n in libs):
        problems.append(f"libgomp is not vendored in fastcnn.libs/ (found {libs}): auditwheel "
                        "repair copies it there")
    missing = sorted(package_files - have)
    if missing:
        problems.append(f"{len(missing)} package files are missing, e.g. {missing[:5]}")
    stray = [n for n in names if not (n.startswith(("fastcnn/", "fastcnn.libs/"))
                                      or n.startswith(f"fastcnn-{version}.dist-info/"))]
    if stray:
        problems.append(f"files outside the package: {stray[:5]}")
    bad = [n for n in forbidden(names) if not (ext.match(n) or n.startswith("fastcnn.libs/"))]
    if bad:
        problems.append(f"build output or caches in the wheel: {bad[:8]}")
    return problems


def package_files(source: Path) -> set[str]:
    """The files the wheel must carry from python/fastcnn (tracked ones; all but caches and
    compiled modules outside git)."""
    tracked = tracked_files(source, ("python/fastcnn",))
    if tracked is None:
        root = source / "python"
        tracked = {p.relative_to(source).as_posix() for p in root.rglob("*") if p.is_file()}
    names = {t[len("python/"):] for t in tracked}
    return {n for n in names if not forbidden([n])}


def check_wheel(path: Path, source: Path, cuda: bool, allow_linux: bool) -> list[str]:
    """Check a wheel; print its size, tag and the sizes of its compiled parts."""
    version = project_version(source)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos if not i.is_dir()]
        meta_name = f"fastcnn-{version}.dist-info/METADATA"
        meta = zf.read(meta_name).decode() if meta_name in names else ""
        ep_name = f"fastcnn-{version}.dist-info/entry_points.txt"
        entry = zf.read(ep_name).decode() if ep_name in names else ""
        wheel_name = f"fastcnn-{version}.dist-info/WHEEL"
        wheel_meta = zf.read(wheel_name).decode() if wheel_name in names else ""
    problems = check_wheel_names(path.name, names, version, package_files(source), cuda,
                                 allow_linux)
    if f"\nVersion: {version}\n" not in meta:
        problems.append(f"METADATA does not say Version: {version}")
    if "fastcnn = fastcnn.cli:main" not in entry:
        problems.append("entry_points.txt has no 'fastcnn = fastcnn.cli:main' (the command)")
    tags = [line.split(":", 1)[1].strip() for line in wheel_meta.splitlines()
            if line.startswith("Tag:")]
    size = path.stat().st_size
    print(f"wheel {path.name}: {size / 1e6:.2f} MB, {len(names)} files, tag(s) {' '.join(tags)}")
    for i in infos:
        if i.filename.endswith(".so") or ".so." in i.filename:
            print(f"  {i.filename}: {i.file_size / 1e6:.2f} MB")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["sdist", "wheel"])
    ap.add_argument("path", type=Path)
    ap.add_argument("--source", type=Path, default=ROOT, help="the source tree (default: here)")
    ap.add_argument("--cuda", action="store_true", help="the wheel must hold the CUDA module")
    ap.add_argument("--allow-linux-tag", action="store_true",
                    help="accept an unrepaired linux_* wheel (no manylinux, no vendored libgomp)")
    args = ap.parse_args(argv)
    if args.kind == "sdist":
        problems = check_sdist(args.path, args.source)
    else:
        problems = check_wheel(args.path, args.source, args.cuda, args.allow_linux_tag)
    for p in problems:
        print(f"check_dist: {args.kind}: {p}", file=sys.stderr)
    if not problems:
        print(f"check_dist: {args.kind} OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
