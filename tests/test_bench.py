"""Smoke tests of the benchmark harness (fastcnn.bench): it runs a tiny suite with one repeat and
writes valid JSON and markdown. No timing is asserted: only structure, bookkeeping and errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import fastcnn
from fastcnn import bench
from fastcnn.bench import suites, timing
from fastcnn.bench.impls import IMPLS, build, make_inputs, outputs_as_arrays

BENCH_DIR = Path(bench.__file__).parent
FAST = ["--suite", "smoke", "--repeats", "1", "--warmup", "1", "--threads", "1",
        "--min-sample-ms", "0", "--gap-ms", "0", "--fit-steps", "1", "--quiet"]


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------------------------
# suites and work counts
# ----------------------------------------------------------------------------------------------
def test_suites_have_the_issue_shapes() -> None:
    ids = {c.id for c in suites.cases("all")}
    for expected in ("seeds.b64.conv1.fwd", "seeds.b256.conv2.bwd_weights",
                     "seeds.b64.pool.bwd", "seeds.b256.dense1.bwd", "seeds.b64.relu3.fwd",
                     "imagenet.conv7x7s2.bwd_data", "imagenet.conv3x3.128.fwd",
                     "imagenet.pool.fwd_idx", "imagenet.relu.bwd", "imagenet.dense.fwd"):
        assert expected in ids
    assert not any(i.startswith("smoke.") for i in ids)
    quick = suites.cases("all", quick=True)
    assert quick and all(c.layer.suite == "seeds" and c.layer.name.startswith("b64.")
                         for c in quick)
    assert [c.id for c in suites.cases("seeds", filters=["*.conv2.bwd*"])] == [
        f"seeds.b{n}.conv2.{p}" for n in (64, 256) for p in ("bwd", "bwd_data", "bwd_weights")]
    with pytest.raises(ValueError, match="unknown suite"):
        suites.cases("cifar")


def test_work_counts() -> None:
    by_id = {c.id: c for c in suites.cases("all")}
    conv2 = 2 * 64 * 64 * 24 * 24 * 32 * 9
    assert by_id["seeds.b64.conv2.fwd"].work == conv2
    assert by_id["seeds.b64.conv2.bwd"].work == 2 * conv2
    assert by_id["seeds.b64.conv2.bwd_data"].work == conv2
    stem = by_id["imagenet.conv7x7s2.fwd"]
    assert stem.layer.out_hw() == (112, 112)
    assert stem.work == 2 * 32 * 64 * 112 * 112 * 3 * 49
    assert by_id["imagenet.dense.bwd"].work == 4 * 256 * 4096 * 1000
    n = 64 * 64 * 24 * 24
    assert by_id["seeds.b64.relu2.fwd"].work == 8 * n
    assert by_id["seeds.b64.relu2.bwd"].work == 12 * n
    assert by_id["seeds.b64.relu2.fwd"].unit == "byte"
    pool = by_id["seeds.b64.pool.fwd"]
    assert pool.layer.out_hw() == (12, 12)
    assert pool.work == 4 * n + 4 * n // 4


def test_every_implementation_agrees_on_the_smoke_suite(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch") if _torch_available() else None
    for case in suites.cases("smoke"):
        inputs = make_inputs(case, rng)
        ref = [a.copy() for a in outputs_as_arrays(build("fastcnn", case, inputs)())]
        assert ref, case.id
        for impl in IMPLS[1:]:
            fn = build(impl, case, inputs, torch)
            if fn is None:
                continue
            if "out" in inputs:  # the *_out passes: every implementation writes this array
                inputs["out"].fill(np.nan)
            err = timing.max_rel_err(outputs_as_arrays(fn()), ref)
            assert err <= 1e-4, f"{case.id}: {impl} differs from fastcnn by {err}"


# ----------------------------------------------------------------------------------------------
# the timing loop
# ----------------------------------------------------------------------------------------------
def test_measure_interleaves_round_robin_and_caps() -> None:
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    firsts: list[str] = []
    out = timing.measure(fns, repeats=3, warmup=1, min_sample_s=0.0, gap_s=0.0,
                         caps={"c": 0.0}, on_first=lambda name, _: firsts.append(name))
    assert firsts == ["a", "b", "c"]
    assert calls[:3] == ["a", "b", "c"]  # the checked first calls
    assert calls[3:] == ["a", "b", "b", "a", "a", "b"]  # rotated rounds; c sat out
    assert out["c"].single_shot and len(out["c"].samples_ms) == 1
    for name in ("a", "b"):
        t = out[name]
        assert not t.single_shot and len(t.samples_ms) == 3 and t.number == 1
        assert t.min_ms <= t.q1_ms <= t.median_ms <= t.q3_ms and t.iqr_ms >= 0
    assert json.dumps(out["a"].to_dict())


def test_max_rel_err() -> None:
    a = np.array([1.0, 2.0, np.nan], dtype=np.float32)
    assert timing.max_rel_err([a], [a.copy()]) == 0.0
    assert math.isclose(timing.max_rel_err([a + 0.2], [a]), 0.1, rel_tol=1e-5)
    assert timing.max_rel_err([a], [a[:2]]) == math.inf
    assert timing.max_rel_err([a], []) == math.inf


def test_background_load_is_a_number_or_none() -> None:
    load = timing.BackgroundLoad()
    sum(range(10000))
    v = load.cores()
    assert v is None or v >= 0.0


# ----------------------------------------------------------------------------------------------
# whole runs
# ----------------------------------------------------------------------------------------------
def test_smoke_run_writes_json_markdown_and_chart(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "res"
    assert bench.main([*FAST, "--out", str(out), "--numpy-cap", "0", "--name", "smoke"]) == 0
    printed = capsys.readouterr().out
    assert "== smoke ==" in printed and "x PyTorch" in printed

    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["schema"] == "fastcnn.bench/1" and doc["name"] == "smoke"
    assert not doc["interrupted"]
    assert doc["machine"]["fastcnn"]["version"] == fastcnn.__version__
    assert set(doc["probes"]) == {"1"} and doc["probes"]["1"]["gemm_gflops"] > 0
    rows = doc["cases"]
    assert [r["id"] for r in rows] == [c.id for c in suites.cases("smoke")]
    for r in rows:
        assert r["threads"] == 1 and r["check_ok"], r["id"]
        fc = r["impls"]["fastcnn"]
        assert fc["samples"] == 1 and fc["median_ms"] > 0 and r["rate"] > 0
        np_ = r["impls"]["numpy"]
        if "skipped" not in np_:
            assert np_["single_shot"]  # --numpy-cap 0: one timed call only
            assert r["speedup"]["numpy"] > 0
        torch_row = r["impls"]["torch"]
        assert ("skipped" in torch_row) != _torch_available()
    assert "skipped" in rows[[r["id"] for r in rows].index("smoke.conv.bwd_data")][
        "impls"]["numpy"]
    assert [t["batch"] for t in doc["train"]] == [4] and doc["train"][0]["check_ok"]
    fit = doc["fit"]
    assert "skipped" in fit or fit["rows"][0]["fit_epoch"]["median_ms"] > 0
    mem = {r["impl"]: r for r in doc["memory"]["rows"]}
    assert set(mem) == ({"fastcnn", "fastcnn.fit", "torch"} if _torch_available()
                        else {"fastcnn", "fastcnn.fit"})
    for r in mem.values():
        assert r["batch"] == 4 and r["threads"] == 1 and r["peak_mib"] >= 0, r
        assert ("x_torch" in r) == _torch_available()

    md = (out / "results.md").read_text(encoding="utf-8")
    assert md.startswith("# fastcnn benchmark smoke") and "| case | thr |" in md
    assert "## training step" in md and "training step peak memory (N=4" in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (out / "speedup.png").exists()
    else:
        assert (out / "speedup.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_to_stdout_with_filters(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main([*FAST, "--json", "--no-numpy", "--no-torch", "--filter", "*.relu.*",
                       "--filter", "smoke.pool.fwd"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in doc["cases"]] == ["smoke.relu.fwd", "smoke.relu.bwd",
                                               "smoke.relu.fwd_out", "smoke.relu.bwd_out",
                                               "smoke.pool.fwd"]
    assert doc["train"] == [] and "skipped" in doc["fit"] and "skipped" in doc["memory"]
    for r in doc["cases"]:
        assert r["impls"]["numpy"] == {"skipped": "--no-numpy"}
        assert r["impls"]["torch"] == {"skipped": "--no-torch"}
        assert r["speedup"] == {"numpy": None, "torch": None}


def test_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main([*FAST, "--filter", "nothing.matches"]) == 2
    assert "no benchmark case" in capsys.readouterr().err
    if not fastcnn.info()["cuda_available"]:
        assert bench.main([*FAST, "--device", "cuda"]) == 2
        assert "CUDA" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bench.main(["--threads", "0"])
    assert e.value.code == 2
    capsys.readouterr()


def test_add_arguments_and_run_for_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="fastcnn")
    sub = parser.add_subparsers(dest="command")
    bench.add_arguments(sub.add_parser("bench"))
    args = parser.parse_args(["bench", *FAST, "--no-torch", "--no-train",
                              "--filter", "smoke.dense.*"])
    assert bench.run(args) == 0
    assert "dense 16->8" in capsys.readouterr().out


def test_memory_child_measures_and_failures_are_reported() -> None:
    from fastcnn.bench import memory

    row = memory.measure_child("fastcnn", 2, 1, 1)  # in this process: its caches may hold it all
    assert row["impl"] == "fastcnn" and row["peak_mib"] >= 0 and row["rss_before_mib"] > 0
    bad = memory._run_one("nope", 2, 1, 1, 60.0, {})
    assert "invalid choice: 'nope'" in bad["skipped"] and "peak_mib" not in bad
    res = memory.run_memory([2], 1, torch=False, steps=1)
    assert [r["impl"] for r in res["rows"]] == ["fastcnn", "fastcnn.fit"]
    assert all(r["peak_mib"] > 0 and "x_torch" not in r for r in res["rows"])
