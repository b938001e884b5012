"""The twins agree: fastcnn.ops, its NumPy oracle fastcnn.reference, the CuPy benchmark reference
fastcnn.bench.cupy_ref and the CUDA adapter fastcnn._cuda_ops, which stands in for the compiled
CPU module fastcnn._cpu.

* ops and reference define the same public functions (``ops.__all__``) with the same signatures
  (parameter names, kinds, defaults and order; annotations may differ);
* every function of cupy_ref has the signature of the ops function of its name, and it covers
  the ops the benchmark runs;
* _cuda_ops has the op functions of _cpu, with _cpu's parameter names in _cpu's order (read from
  the pybind11 docstrings, so no CUDA build is needed; _cuda_ops' source is parsed, not imported,
  since it imports CuPy and the CUDA module);
* the optimizer updates of ops equal the reference's NumPy formulas bit for bit.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from fastcnn import _cpu, ops, reference
from fastcnn.bench import cupy_ref

#: the ops the benchmarks time through cupy_ref (fastcnn.bench.impls.api_fn, bench/training.py)
CUPY_REF_OPS = {"conv2d", "conv2d_backward", "cross_entropy", "linear", "linear_backward",
                "max_pool2d", "max_pool2d_backward", "relu", "relu_backward", "avg_pool2d",
                "avg_pool2d_backward", "global_avg_pool2d", "global_avg_pool2d_backward",
                "global_max_pool2d", "global_max_pool2d_backward"}

#: the compiled module's functions that are not ops (machine facts, settings)
CPU_NOT_OPS = {"best_isa", "isa", "num_threads", "probe_bandwidth", "probe_fma", "set_isa",
               "set_num_threads"}

Params = list[tuple[str, str, Any]]


def _params(fn: Any) -> Params:
    """(name, kind, default) of each parameter, in order."""
    return [(p.name, p.kind.name, p.default) for p in inspect.signature(fn).parameters.values()]


def _own_functions(mod: Any) -> dict[str, Any]:
    """The public functions defined in ``mod`` itself, or for a package in its submodules (not
    imported helpers)."""
    def own(f: Any) -> bool:
        return f.__module__ == mod.__name__ or (
            hasattr(mod, "__path__") and f.__module__.startswith(mod.__name__ + "."))

    return {n: f for n, f in vars(mod).items()
            if inspect.isfunction(f) and not n.startswith("_") and own(f)}


def _diff(a: Params, b: Params) -> str:
    return f"\n  {a}\n  {b}"


def test_ops_and_reference_have_the_same_functions() -> None:
    assert set(ops.__all__) == set(_own_functions(ops)), "ops.__all__ is not its function list"
    missing = set(ops.__all__) - set(_own_functions(reference))
    extra = set(_own_functions(reference)) - set(ops.__all__)
    assert not missing and not extra, (f"reference lacks {sorted(missing)}, has extra "
                                       f"{sorted(extra)}")
    assert set(ops.__all__) <= set(reference.__all__)


@pytest.mark.parametrize("name", sorted(ops.__all__))
def test_ops_and_reference_signatures(name: str) -> None:
    mine, theirs = _params(getattr(ops, name)), _params(getattr(reference, name))
    assert mine == theirs, f"ops.{name} and reference.{name} differ:{_diff(mine, theirs)}"


def test_cupy_ref_covers_the_benchmarked_ops() -> None:
    funcs = _own_functions(cupy_ref)
    assert set(funcs) == CUPY_REF_OPS, sorted(set(funcs) ^ CUPY_REF_OPS)
    assert set(cupy_ref.__all__) == CUPY_REF_OPS
    assert CUPY_REF_OPS <= set(ops.__all__)


@pytest.mark.parametrize("name", sorted(CUPY_REF_OPS))
def test_cupy_ref_signatures(name: str) -> None:
    mine, theirs = _params(getattr(ops, name)), _params(getattr(cupy_ref, name))
    assert mine == theirs, f"ops.{name} and cupy_ref.{name} differ:{_diff(mine, theirs)}"


def _compiled_names(fn: Any) -> list[str]:
    """Parameter names of a pybind11 function from its docstring's first line,
    ``name(a: T, b: T = 1, ...) -> R``."""
    first = fn.__doc__.splitlines()[0]
    m = re.fullmatch(rf"{fn.__name__}\((.*)\) -> .*", first)
    assert m, f"unexpected pybind11 signature line {first!r}"
    names, depth, start = [], 0, 0
    args = m.group(1)
    for i, ch in enumerate(args + ","):  # split at top-level commas (types have brackets)
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            part = args[start:i].strip()
            if part:
                names.append(part.split(":")[0].strip())
            start = i + 1
    return names


def _cuda_ops_functions() -> dict[str, list[str]]:
    """The public functions of the package fastcnn/_cuda_ops/ and their parameter names, from
    the source."""
    import fastcnn

    out = {}
    for path in sorted(Path(fastcnn.__file__).with_name("_cuda_ops").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                a = node.args
                out[node.name] = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    return out


def _cpu_ops() -> dict[str, Any]:
    return {n: f for n, f in vars(_cpu).items()
            if callable(f) and not n.startswith("_") and n not in CPU_NOT_OPS
            and getattr(f, "__doc__", None)}


def test_cuda_adapter_has_the_cpu_modules_functions() -> None:
    adapter = _cuda_ops_functions()
    assert set(adapter) == set(_cpu_ops()), sorted(set(adapter) ^ set(_cpu_ops()))
    import fastcnn

    src = Path(fastcnn.__file__).with_name("_cuda_ops").joinpath("__init__.py").read_text()
    listed = re.search(r"__all__ = \[(.*?)\]", src, re.S)
    assert listed and set(re.findall(r'"(\w+)"', listed.group(1))) == set(adapter)


@pytest.mark.parametrize("name", sorted(_cpu_ops()))
def test_cuda_adapter_parameter_names(name: str) -> None:
    """The adapter's parameters are the compiled CPU module's (ops passes both the same
    arguments). The skipping flags are ``compute_dx`` / ``compute_dw`` on both."""
    compiled = _compiled_names(_cpu_ops()[name])
    adapter = _cuda_ops_functions()[name]
    assert adapter == compiled, f"_cuda_ops.{name} and _cpu.{name} differ:\n  {adapter}\n  " \
                                f"{compiled}"


def test_signature_parser_reads_defaults_and_brackets() -> None:
    fake = SimpleNamespace(__name__="f", __doc__="f(x: object, s: tuple[int, int] = (1, 2), "
                                                 "flag: bool = True) -> None\n")
    assert _compiled_names(fake) == ["x", "s", "flag"]


# ------------------------------------------------------------------------------------------------
# the optimizer updates: ops (compiled) == reference (NumPy), bit for bit


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """The same bits (NaN: any NaN, as in tests/test_optim.py)."""
    return bool(np.array_equal(a.view(np.uint32), b.view(np.uint32))
                or np.array_equal(a, b, equal_nan=True))


def _state(rng: np.random.Generator, n: int, k: int) -> list[np.ndarray]:
    arrays = [rng.standard_normal(n).astype(np.float32) for _ in range(k)]
    arrays[0][:4] = [np.inf, -np.inf, np.nan, 0.0]
    return arrays


@pytest.mark.parametrize("kw", [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01},
    {"lr": 0.3, "weight_decay": 1e-3},
], ids=str)
def test_sgd_update_ops_equals_reference(kw: dict[str, Any]) -> None:
    rng = np.random.default_rng(11)
    p, buf = _state(rng, 1001, 1)[0], np.zeros(1001, np.float32)
    rp, rbuf = p.copy(), buf.copy()
    for step in range(4):
        g = rng.standard_normal(1001).astype(np.float32)
        g0 = g.copy()
        use = buf if kw.get("momentum") else None
        ops.sgd_update(p, g, use, **kw, first=step == 0)
        with np.errstate(all="ignore"):
            reference.sgd_update(rp, g, rbuf if use is not None else None, **kw,
                                 first=step == 0)
        assert _bits_equal(p, rp) and _bits_equal(buf, rbuf), step
        assert _bits_equal(g, g0), "the gradient was modified"


@pytest.mark.parametrize("kw", [
    {"lr": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    {"lr": 0.01, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-7, "weight_decay": 0.1},
    {"lr": 0.003, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-5, "weight_decay": 0.1,
     "decoupled": True},
], ids=str)
def test_adam_update_ops_equals_reference(kw: dict[str, Any]) -> None:
    rng = np.random.default_rng(12)
    p = _state(rng, 999, 1)[0]
    m, v = np.zeros_like(p), np.zeros_like(p)
    rp, rm, rv = p.copy(), m.copy(), v.copy()
    for step in range(1, 5):
        g = rng.standard_normal(999).astype(np.float32)
        ops.adam_update(p, g, m, v, **kw, step=step)
        with np.errstate(all="ignore"):
            reference.adam_update(rp, g, rm, rv, **kw, step=step)
        assert _bits_equal(p, rp) and _bits_equal(m, rm) and _bits_equal(v, rv), step


def test_update_argument_errors() -> None:
    p, g = np.zeros(4, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="step"):
        ops.adam_update(p, g, p.copy(), p.copy(), lr=0.1, beta_1=0.9, beta_2=0.99, epsilon=1e-7,
                        step=0)
    with pytest.raises(ValueError, match="momentum buffer"):
        ops.sgd_update(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="momentum buffer"):
        reference.sgd_update(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="same device"):
        ops.sgd_update(p, type("FakeCupy", (), {"__module__": "cupy"})(), lr=0.1)


@pytest.mark.parametrize(("compute_dx", "compute_dw"), [(True, False), (False, True),
                                                        (False, False)])
def test_skipped_gradients_are_none_on_both_twins(compute_dx: bool, compute_dw: bool) -> None:
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    xl, wl = x.reshape(2, -1)[:, :12], w.reshape(4, -1)[:, :12]
    dyl = dy.reshape(2, -1)[:, :4]
    for api in (ops, reference):
        full = api.conv2d_backward(dy, x, w, stride=2, padding=1)
        got = api.conv2d_backward(dy, x, w, stride=2, padding=1, compute_dx=compute_dx,
                                  compute_dw=compute_dw)
        lin_full = api.linear_backward(dyl, xl, wl)
        lin = api.linear_backward(dyl, xl, wl, compute_dx=compute_dx, compute_dw=compute_dw)
        for a, b, wanted in ((got, full, (compute_dx, compute_dw, True)),
                             (lin, lin_full, (compute_dx, compute_dw, True))):
            for g, f, want in zip(a, b, wanted, strict=True):
                assert (g is None) == (not want), api.__name__
                if want:  # db may round differently without the dw pass (CPU kernels)
                    np.testing.assert_allclose(g, f, rtol=1e-5, atol=1e-5, err_msg=api.__name__)
