"""The one version: pyproject.toml's [project] version is what the compiled modules report
(CMakeLists.txt), hence ``fastcnn.__version__``, ``fastcnn --version``, ``fastcnn.info()``, the
installed metadata and CHANGELOG.md's newest entry. Also what ``info()`` says about the CUDA
module's architectures. Runs against an installed wheel too (tools/wheel_smoke.sh)."""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

import pytest

import fastcnn
from fastcnn import _cpu, _native, cli

ROOT = Path(__file__).resolve().parents[1]
ARCH = re.compile(r"^(sm|compute)_\d+[a-z]?$")


def _pyproject_version() -> str:
    path = ROOT / "pyproject.toml"
    if not path.is_file():
        pytest.skip("no pyproject.toml next to tests/")
    # the [project] table's version line (tomllib is Python >= 3.11; the wheels start at 3.10)
    project = re.search(r"^\[project\]\n(.*?)(?=^\[)", path.read_text(), flags=re.M | re.S)
    assert project, "pyproject.toml has no [project] table"
    version = re.search(r'^version = "([^"]+)"', project.group(1), flags=re.M)
    assert version, "pyproject.toml's [project] has no version = \"...\" line"
    return version.group(1)


def test_version_is_pyprojects() -> None:
    assert fastcnn.__version__ == _cpu.__version__ == _pyproject_version()
    assert fastcnn.info()["version"] == fastcnn.__version__


def test_cli_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastcnn {fastcnn.__version__}"


def test_installed_metadata_agrees() -> None:
    """When the imported fastcnn is an installed distribution (not python/ on PYTHONPATH), its
    metadata carries the same version."""
    try:
        dist = md.distribution("fastcnn")
    except md.PackageNotFoundError:
        pytest.skip("fastcnn is not installed (imported from the source tree)")
    init = Path(str(dist.locate_file("fastcnn/__init__.py"))).resolve()
    if init != Path(fastcnn.__file__).resolve():
        pytest.skip(f"the installed fastcnn ({init}) is not the imported one ({fastcnn.__file__})")
    assert dist.version == fastcnn.__version__


def test_changelog_names_this_version() -> None:
    path = ROOT / "CHANGELOG.md"
    if not path.is_file():
        pytest.skip("no CHANGELOG.md next to tests/")
    headings = re.findall(r"^## \[?([0-9][^\]\s]*)\]?", path.read_text(), flags=re.M)
    assert headings, "CHANGELOG.md has no '## [x.y.z]' entry"
    assert headings[0] == fastcnn.__version__, (
        f"CHANGELOG.md's newest entry is {headings[0]}, the package is {fastcnn.__version__}: "
        "add an entry for this version (CONTRIBUTING.md, Releasing)")


def test_cuda_archs() -> None:
    archs = fastcnn.info()["cuda_archs"]
    assert isinstance(archs, list)
    if not fastcnn.info()["cuda_built"]:
        assert archs == []
        return
    mod = _native.cuda()
    assert mod.__version__ == fastcnn.__version__  # not a stale module from another build
    if archs == ["emulated"]:  # tools/cuda_emu/run.sh's module
        return
    assert archs, "the CUDA module lists no architectures"
    assert all(ARCH.match(a) for a in archs), archs
    assert any(a.startswith("sm_") for a in archs), archs  # some machine code, not only PTX


def test_info_prints_the_archs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("cuda_archs: "))
    expected = " ".join(fastcnn.info()["cuda_archs"]) or "none"  # type: ignore[arg-type]
    assert line == f"cuda_archs: {expected}"
