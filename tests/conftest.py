"""Shared fixtures of the test suite.

* ``isa``: parametrises a test over every CPU kernel table this machine supports (generic, avx2,
  avx512 up to ``fastcnn._cpu.best_isa()``), activating it for the test and restoring the previous
  one afterwards. ``ISAS`` lists the same names for tests that loop themselves.
* ``rng``: a seeded ``numpy.random.Generator`` (a fresh one per test: reproducible in any order).
* ``cp``: CuPy for the GPU tests, which are skipped unless fastcnn's CUDA backend can run here.
* an autouse fixture restoring the thread count and the active ISA after every test.
* hypothesis profiles, chosen by the environment variable HYPOTHESIS_PROFILE: "ci" (the default:
  few examples, derandomised, no deadline), "dev" (more examples, random) and "fuzz" (many).
* tests marked ``fuzz`` are deselected unless the ``-m`` expression names ``fuzz``; tests marked
  ``cuda`` are skipped when no CUDA device is usable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import fastcnn
from fastcnn import _cpu

SEED = 20240531

# ----------------------------------------------------------------------------------------------
# hypothesis profiles
# ----------------------------------------------------------------------------------------------
# The `isa` and `rng` fixtures are function-scoped on purpose: one ISA per test, shared by all of
# its examples (examples draw their own seeds), so the health check about that is switched off.
_SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
             HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=20, deadline=None, derandomize=True,
                          database=None, print_blob=True, suppress_health_check=_SUPPRESS)
settings.register_profile("dev", max_examples=100, deadline=None, print_blob=True,
                          suppress_health_check=_SUPPRESS)
settings.register_profile("fuzz", max_examples=2000, deadline=None, print_blob=True,
                          suppress_health_check=_SUPPRESS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# ----------------------------------------------------------------------------------------------
# ISAs
# ----------------------------------------------------------------------------------------------
_ALL_ISAS = ("generic", "avx2", "avx512")
ISAS: list[str] = list(_ALL_ISAS[: _ALL_ISAS.index(_cpu.best_isa()) + 1])


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Activate one supported ISA's kernels for the test; the previous one is restored after."""
    previous = _cpu.isa()
    active = _cpu.set_isa(request.param)
    assert active == request.param, f"set_isa({request.param!r}) activated {active!r}"
    try:
        yield active
    finally:
        _cpu.set_isa(previous)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, fresh for every test."""
    return np.random.default_rng(SEED)


@pytest.fixture(scope="session")
def cp() -> Any:
    """CuPy, when fastcnn's CUDA backend can run here (else the test is skipped): the GPU tests
    (test_cuda*.py, test_bench_cuda.py) take it."""
    cupy = pytest.importorskip("cupy")
    if not fastcnn.info()["cuda_built"]:
        pytest.skip("fastcnn was built without its CUDA module")
    if not fastcnn.info()["cuda_available"]:
        pytest.skip("no usable CUDA device")
    return cupy


@pytest.fixture
def emu(cp: Any) -> Any:
    """The CPU emulator's counters (``cupy._emu``: syncs, device-to-host copies, launches,
    captures; tools/cuda_emu/fake_cupy), reset, with the kernels on; skipped on a real GPU or
    without the emulator. Pending deferred device checks are discarded afterwards."""
    from fastcnn import _deferred

    counters = getattr(cp, "_emu", None)
    if counters is None:
        pytest.skip("needs the CPU emulator's counters (tools/cuda_emu/run.sh)")
    counters.kernels(True)
    counters.reset()
    yield counters
    counters.kernels(True)
    _deferred.discard()


@pytest.fixture(autouse=True)
def _restore_global_state() -> Iterator[None]:
    """Tests may change the thread count or the ISA: put both back afterwards."""
    threads, active = _cpu.num_threads(), _cpu.isa()
    try:
        yield
    finally:
        fastcnn.set_num_threads(threads)
        _cpu.set_isa(active)


# ----------------------------------------------------------------------------------------------
# collection: fuzz deselection, cuda skip
# ----------------------------------------------------------------------------------------------
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "fuzz" not in (config.getoption("markexpr", "") or ""):
        kept, dropped = [], []
        for item in items:
            (dropped if item.get_closest_marker("fuzz") else kept).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
    if not fastcnn.info()["cuda_available"]:
        skip = pytest.mark.skip(reason="needs a usable CUDA device and fastcnn built with CUDA")
        for item in items:
            if item.get_closest_marker("cuda"):
                item.add_marker(skip)


# ----------------------------------------------------------------------------------------------
# comparing float32 results of long sums with a float64 reference
# ----------------------------------------------------------------------------------------------
EPS32 = float(np.finfo(np.float32).eps)  # 2^-23


def sum_tolerance(exact: np.ndarray, abs_terms: np.ndarray, length: int) -> np.ndarray:
    """Per-element tolerance of a float32 result that is a sum of ``length`` products.

    ``exact`` is the float64 reference of the same computation on the same float32 inputs
    (exact up to 2^-52, i.e. the truth for our purpose) and ``abs_terms`` the same computation
    on the absolute values of the inputs: the sum of |terms| of every output element.

    A float32 sum of L terms in any order, blocked or not, with or without FMA, has error
    ``<= gamma_L * sum|terms|`` (gamma_L ~ L * eps, Higham, worst case); the rounding errors of
    independent additions are of random sign, so they grow like sqrt(L) rather than L. We allow
    ``4 * eps32 * sqrt(L) * sum|terms|`` plus the final rounding ``eps32 * |exact|`` plus
    ``L * 2^-149`` for products that underflow to denormals. A real kernel bug (a term missing,
    doubled or taken from a neighbour) moves an element by about one term, ~sum|terms| / L,
    which is far above this for every L the tests use (checked by exact integer tests anyway).
    """
    L = max(int(length), 1)
    return 4.0 * EPS32 * np.sqrt(L) * abs_terms + EPS32 * np.abs(exact) + L * 2.0**-149


def _describe_mismatch(got: np.ndarray, exact: np.ndarray, bad: np.ndarray,
                       tol: np.ndarray | None, what: str) -> str:
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    msg = (f"{what}: {int(bad.sum())} of {bad.size} elements differ; first at {idx}: got "
           f"{got[idx]!r}, expected {exact[idx]!r}")
    if tol is not None:
        msg += f" (tolerance {tol[idx]:.3g})"
    return msg + f"; shape {got.shape}"


def check_sum_close(got: np.ndarray, exact: np.ndarray, abs_terms: np.ndarray, length: int,
                    what: str = "result") -> None:
    """Assert a float32 result of sums matches its float64 reference (see sum_tolerance)."""
    assert isinstance(got, np.ndarray), f"{what}: got {type(got).__name__}"
    assert got.dtype == np.float32, f"{what}: dtype {got.dtype}, expected float32"
    assert got.shape == exact.shape, f"{what}: shape {got.shape}, expected {exact.shape}"
    assert got.flags.c_contiguous, f"{what}: not C-contiguous"
    tol = sum_tolerance(exact, abs_terms, length)
    bad = ~(np.abs(got.astype(np.float64) - exact) <= tol)
    assert not bad.any(), _describe_mismatch(got, exact, bad, tol, what)


def check_exact(got: np.ndarray, exact: np.ndarray, what: str = "result") -> None:
    """Assert a float32 result equals a reference exactly (NaN equal to NaN)."""
    assert isinstance(got, np.ndarray), f"{what}: got {type(got).__name__}"
    assert got.dtype == np.float32, f"{what}: dtype {got.dtype}, expected float32"
    assert got.shape == exact.shape, f"{what}: shape {got.shape}, expected {exact.shape}"
    assert got.flags.c_contiguous, f"{what}: not C-contiguous"
    expected = np.asarray(exact).astype(np.float32)
    if exact.dtype == np.float64:  # an integer-valued float64 sum must be representable
        assert np.array_equal(expected.astype(np.float64), exact, equal_nan=True), (
            f"{what}: the reference is not exactly representable in float32")
    bad = ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
    assert not bad.any(), _describe_mismatch(got, expected, bad, None, what)


def check_bitwise(got: np.ndarray, expected: np.ndarray, what: str = "result") -> None:
    """Assert two float32 arrays are bit-identical (sign of zero, NaN payloads, denormals)."""
    assert got.dtype == expected.dtype == np.float32, f"{what}: {got.dtype} vs {expected.dtype}"
    assert got.shape == expected.shape, f"{what}: shape {got.shape} vs {expected.shape}"
    a, b = got.view(np.uint32), np.ascontiguousarray(expected).view(np.uint32)
    bad = a != b
    assert not bad.any(), _describe_mismatch(got, expected, bad, None, what + " (bitwise)")


def small_ints(rng: np.random.Generator, shape: tuple[int, ...], lo: int = -3,
               hi: int = 3) -> np.ndarray:
    """float32 array of integers in [lo, hi]: sums of their products are exact in float32."""
    return rng.integers(lo, hi + 1, size=shape).astype(np.float32)


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def f64(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=np.float64)


def abs64(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.abs(np.asarray(a, dtype=np.float64))
