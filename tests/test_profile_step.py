"""The training-step profile (fastcnn.bench.profile, benchmarks/profile_step.py): it runs on tiny
models in one round, names every layer, its rows add up to about the step, the ops are restored
afterwards, the capture splits each backward into its passes, and bad input is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import ops, optimizers
from fastcnn.bench import profile as prof
from fastcnn.bench.profile_calls import _all_layers, _copier
from fastcnn.bench.profile_report import by_kind, gap, split_cost, table, totals


def _residual() -> fc.Model:
    """Conv-BN-ReLU, Conv-BN, Add, ReLU, MaxPool, GlobalAvgPool, Dense on 3x8x8 inputs."""
    from fastcnn import layers as L

    x = fc.Input((3, 8, 8))
    h = L.Conv2D(4, 3, padding="same")(x)
    h = L.Activation("relu")(L.BatchNormalization()(h))
    s = L.Conv2D(4, 3, padding="same")(h)
    s = L.BatchNormalization()(s)
    h = L.Activation("relu")(L.Add()([h, s]))
    h = L.GlobalAveragePooling2D()(L.MaxPooling2D(2)(h))
    m = fc.Model(x, L.Dense(10, activation="softmax")(h))
    m.compile(optimizers.SGD(1e-3, momentum=0.9), "sparse_categorical_crossentropy")
    return m


def _sequential() -> fc.Sequential:
    """The seeds' pattern, small: Conv-ReLU, Conv-ReLU, MaxPool, Flatten, Dense-ReLU, softmax."""
    from fastcnn import layers as L

    m = fc.Sequential([L.Conv2D(4, 3, activation="relu"), L.Conv2D(6, 3, activation="relu"),
                       L.MaxPooling2D(2), L.Flatten(), L.Dense(8, activation="relu"),
                       L.Dense(10, activation="softmax")], input_shape=(1, 10, 10))
    m.compile(optimizers.SGD(1e-3), "sparse_categorical_crossentropy")
    return m


def _names(model: object) -> set[str]:
    return {lay.name for lay in _all_layers(model) if type(lay).__name__ != "InputLayer"}


def _check(doc: dict, model_names: set[str], torch: object) -> None:
    run = doc["runs"][0]
    rows = run["rows"]
    # every layer has a row, or its work is in another's (a fused activation)
    assert {r["layer"] for r in rows} | set(doc["fused"]) >= model_names
    assert set(doc["fused"].values()) <= {r["layer"] for r in rows}
    assert {"(loss)", "(optimizer)"} <= {r["layer"] for r in rows}
    assert all(r["fastcnn_cpu_ms"] > 0 and math.isfinite(r["fastcnn_cpu_ms"]) for r in rows)
    t = totals(run)["fastcnn"]
    assert t["step"] > 0 and t["parts"] > 0
    # the rows are the step's op calls timed alone: about the step, not a multiple of it
    # (generous for one round on a loaded machine)
    assert 0.2 * t["step"] < t["parts"] < 5 * t["step"], t
    assert abs(t["step"] - t["parts"] - t["overhead"]) < 1e-9
    kinds = {r["kind"] for r in rows}
    assert {"conv forward", "conv weight gradient", "dense forward", "dense backward-data",
            "dense weight gradient", "optimizer update"} <= kinds
    for r in rows:
        if r["flop"]:
            assert r["kind"].startswith(("conv", "dense"))
    text = table(doc, 1.5)
    for name in model_names:
        assert name[:22] in text
    if torch is None:
        assert all(r["torch_cpu_ms"] is None for r in rows) and gap(run, 1.5) is None
    else:
        assert "torch" in run["step"] and run["step"]["torch"]["cpu_ms"] > 0
        twins = [r for r in rows if r["torch_cpu_ms"] is not None]
        assert len(twins) >= len(rows) - 2, [r["kind"] for r in rows if
                                            r["torch_cpu_ms"] is None]
        g = gap(run, 1.5)
        assert g is not None and g["needed_ms"] > 0 and 0 <= g["cut_pct"] < 100
    assert sum(a["rows"] for a in by_kind(run)) == len(rows)
    split, whole = split_cost(run)  # the split backwards timed unsplit too
    assert split > 0 and whole > 0
    assert "split backward calls" in text


def _torch_or_none() -> object:
    try:
        import torch
    except ImportError:
        return None
    return torch


@pytest.mark.parametrize("build, with_torch", [(_residual, True), (_sequential, False)],
                         ids=["residual-torch", "sequential-fastcnn-only"])
def test_profile_runs_names_every_layer_and_sums(build, with_torch) -> None:
    torch = _torch_or_none() if with_torch else None
    model = build()
    before = {n: getattr(ops, n) for n in ops.__all__}
    doc = prof.profile_step(model, 4, rounds=1, min_sample_s=0.0, torch=torch, peak_gflops=50.0)
    assert {n: getattr(ops, n) for n in ops.__all__} == before  # the wrappers are gone
    assert all("forward" not in lay.__dict__ for lay in _all_layers(model))
    _check(doc, _names(model), torch)


def test_torch_rows_match_the_layers() -> None:
    """With PyTorch: the sequential model's fused conv backward (pool + ReLU) gets the unfused
    pair in its twin, and the whole PyTorch step's loss is fastcnn's (same weights)."""
    torch = pytest.importorskip("torch")
    model = _sequential()
    net, x, y = prof._model(model, 4, 1e-3, 0.0, 0)
    calls = prof.capture(net, lambda: net.train_on_batch(x, y))
    parts = prof.build_parts(calls, torch)
    fused = [p for p in parts if p.kind == "conv backward-data"]
    assert fused and "max_pool2d backward" in fused[0].torch_note
    assert "threshold_backward" in fused[0].torch_note
    expect = float(net.test_on_batch(x, y))
    got = prof._torch_step(torch, net)(torch.from_numpy(x), torch.from_numpy(y))
    assert got == pytest.approx(expect, rel=1e-4)


def test_capture_splits_backward_and_keeps_aliasing() -> None:
    model = _sequential()
    net, x, y = prof._model(model, 4, 1e-3, 0.0, 0)
    net.train_on_batch(x, y)
    calls = prof.capture(net, lambda: net.train_on_batch(x, y))
    ops_called = [c.op for c in calls]
    assert ops_called.count("conv2d") == 2 and ops_called.count("conv2d_backward") == 2
    assert ops_called.count("sgd_update") == 8  # 4 weighted layers x (kernel, bias)
    parts = prof.build_parts(calls)
    conv = [p.kind for p in parts if p.layer_class == "Conv2D"]
    # the first convolution has no data gradient (compute_dx=False), the second both passes
    assert conv == ["conv forward", "conv forward", "conv backward-data",
                    "conv weight gradient", "conv weight gradient"]
    # the split passes give the fused call's results
    c = next(c for c in calls if c.op == "conv2d_backward" and c.kwargs.get("compute_dx", True))
    dx, dw, db = ops.conv2d_backward(*c.args, **{**c.kwargs, "dx_out": None})
    dx1 = ops.conv2d_backward(*c.args, **{**c.kwargs, "dx_out": None, "compute_dw": False})[0]
    _, dw2, db2 = ops.conv2d_backward(*c.args, **{**c.kwargs, "dx_out": None,
                                                  "compute_dx": False})
    np.testing.assert_array_equal(dx, dx1)
    np.testing.assert_array_equal(dw, dw2)
    np.testing.assert_array_equal(db, db2)
    copy = _copier()
    a = np.ones(3, np.float32)
    args = copy((a, {"out": a}))
    assert args[0] is args[1]["out"] and args[0] is not a


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown name 'nope'"):
        prof.profile_step("nope", 4)
    with pytest.raises(ValueError, match="batch: expected an int >= 2"):
        prof.profile_step("seeds_cnn", 1)
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        prof.profile_step("seeds_cnn", 4, rounds=0)
    m = _sequential()
    m.compile(optimizers.Adam(), "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"compiled with optimizers\.SGD"):
        prof.profile_step(m, 4)


def test_cli_prints_the_table(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    from fastcnn.bench.profile_cli import main

    out = tmp_path / "p.json"
    # fastcnn only: the script's path, the JSON file (a tiny run: batch 2, one round)
    assert main(["--model", "seeds_cnn", "--batch", "2", "--threads", "1", "--repeats", "1",
                 "--min-sample-ms", "0", "--peak-gflops", "50", "--no-torch", "--json",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "conv2d_1" in text and "overhead (step - sum)" in text
    assert out.read_text().startswith("{")
    assert main(["--model", "seeds_cnn", "--batch", "1", "--no-torch"]) == 2


def test_bench_profile_hook(capsys: pytest.CaptureFixture[str]) -> None:
    """``fastcnn bench --profile MODEL`` reaches the profile (its own errors come back as the
    benchmark's exit status 2 with the message)."""
    from fastcnn import bench

    assert bench.main(["--profile", "nope", "--no-torch"]) == 2
    assert "unknown name 'nope'" in capsys.readouterr().err
    assert bench.main(["--profile", "seeds_cnn", "--device", "cuda", "--no-torch"]) == 2
    assert "runs on the CPU" in capsys.readouterr().err
