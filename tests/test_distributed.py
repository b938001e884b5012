"""fastcnn.distributed: data-parallel training on MPI (CPU) and NCCL (GPU).

The multi-rank tests launch ``tests/dist_worker.py`` with ``mpiexec -n 2`` (one thread per
rank) and compare what the ranks wrote; they skip when mpi4py or mpiexec is missing
(``pip install "fastcnn[mpi]"``). The in-process tests run at world size 1 without MPI. The
NCCL test needs a GPU and skips elsewhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import distributed as dist
from fastcnn.distributed import _comm, _state
from fastcnn.distributed.reduce import _state_names
from fastcnn.distributed.sharding import local_items, shard_range

HERE = Path(__file__).parent
WORKER = HERE / "dist_worker.py"
PY_DIR = Path(fc.__file__).parent.parent
_LAUNCH_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "SLURM_NTASKS",
                "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMI_FD", "PMI_PORT")


def _mpiexec() -> str | None:
    near = Path(sys.executable).parent / "mpiexec"
    return str(near) if near.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
HAVE_MPI = importlib.util.find_spec("mpi4py") is not None and MPIEXEC is not None
needs_mpi = pytest.mark.skipif(
    not HAVE_MPI, reason="needs mpi4py and mpiexec (pip install \"fastcnn[mpi]\", i.e. "
                         "mpi4py and mpich)")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS}
    env.update(FASTCNN_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(PY_DIR), env.get("PYTHONPATH", "")]), **extra)
    return env


def run(scenario: str, out: Path, *args: str, ranks: int = 2, timeout: float = 90,
        **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the worker on ``ranks`` ranks (1: a plain process, no mpiexec)."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(WORKER), scenario, str(out), *args]
    if ranks > 1:
        assert MPIEXEC is not None
        cmd = [MPIEXEC, "-n", str(ranks), "-prepend-rank", *cmd]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(**env))
    return p, time.monotonic() - t0


def diag(out: Path, rank: int) -> tuple[dict, dict]:
    with open(out / f"diag_{rank}.json") as f:
        meta = json.load(f)
    return meta, dict(np.load(out / f"diag_{rank}.npz"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The ``train`` scenario (global batch 33: shards of 16 and 17) on 2 ranks, again on
    2 ranks, and on 1 process without mpiexec."""
    if not HAVE_MPI:
        pytest.skip("needs mpi4py and mpiexec")
    base = tmp_path_factory.mktemp("dist")
    outs = {"two": base / "two", "again": base / "again", "one": base / "one"}
    for name, ranks in (("two", 2), ("again", 2), ("one", 1)):
        p, _ = run("train", outs[name], "33", ranks=ranks)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        (outs[name] / "stdout.txt").write_text(p.stdout + p.stderr)
    return outs


# -- several ranks --------------------------------------------------------------------------

@needs_mpi
def test_two_ranks_match_one_rank_on_the_same_global_batches(trained: dict[str, Path]) -> None:
    two, w2 = diag(trained["two"], 0)
    one, w1 = diag(trained["one"], 0)
    assert two["world"] == 2 and one["world"] == 1
    np.testing.assert_allclose(w2["weights"], w1["weights"], rtol=0, atol=2e-5)
    for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(two["history"][k], one["history"][k], rtol=1e-5, err_msg=k)
    assert two["eval"].keys() == one["eval"].keys()
    for k in two["eval"]:
        assert two["eval"][k] == pytest.approx(one["eval"][k], rel=1e-5)
    assert w2["pred"].shape == (101, 10)  # 101 rows: batches of 32 (16 + 16) and 5 (2 + 3)
    np.testing.assert_allclose(w2["pred"], w1["pred"], rtol=0, atol=1e-5)


@needs_mpi
def test_every_rank_has_the_same_weights_after_every_step(trained: dict[str, Path]) -> None:
    m0, a0 = diag(trained["two"], 0)
    m1, a1 = diag(trained["two"], 1)
    assert len(m0["crcs"]) == 2 * 7  # ceil(200 / 33) steps per epoch
    assert m0["crcs"] == m1["crcs"]
    np.testing.assert_array_equal(a0["weights"], a1["weights"])
    np.testing.assert_array_equal(a0["pred"], a1["pred"])
    assert m0["history"] == m1["history"] and m0["eval"] == m1["eval"]


@needs_mpi
def test_runs_on_a_fixed_number_of_ranks_are_bit_identical(trained: dict[str, Path]) -> None:
    m, a = diag(trained["two"], 0)
    m2, b = diag(trained["again"], 0)
    assert m["crcs"] == m2["crcs"] and m["history"] == m2["history"]
    np.testing.assert_array_equal(a["weights"], b["weights"])


@needs_mpi
def test_only_rank_zero_writes_and_prints(trained: dict[str, Path]) -> None:
    files = sorted(p.name for p in (trained["two"] / "files").iterdir())
    assert files == ["ckpt_r0_1.npz", "ckpt_r0_2.npz", "final.npz", "log_r0.csv"], files
    lines = (trained["two"] / "files" / "log_r0.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch")
    text = (trained["two"] / "stdout.txt").read_text().replace("\r", "\n")
    assert "Epoch 1/2" in text and "Epoch 2/2" in text
    assert not [ln for ln in text.splitlines() if ln.startswith("[1]") and "Epoch" in ln]
    model = fc.load_model(trained["two"] / "files" / "final.npz")
    _, a = diag(trained["two"], 0)
    np.testing.assert_array_equal(np.concatenate([w.ravel() for w in model.get_weights()]),
                                  a["weights"])


@needs_mpi
def test_resume_from_a_checkpoint_on_another_number_of_ranks(trained: dict[str, Path],
                                                             tmp_path: Path) -> None:
    ckpt = str(trained["two"] / "files" / "ckpt_r0_1.npz")  # written by 2 ranks
    p1, _ = run("resume", tmp_path / "one", "33", ckpt, ranks=1)
    p2, _ = run("resume", tmp_path / "two", "33", ckpt, ranks=2)
    assert p1.returncode == 0 and p2.returncode == 0, p1.stderr[-2000:] + p2.stderr[-2000:]
    m1, a1 = diag(tmp_path / "one", 0)
    m2, a2 = diag(tmp_path / "two", 0)
    assert len(m1["history"]["loss"]) == 1
    np.testing.assert_allclose(a2["weights"], a1["weights"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(m2["history"]["loss"], m1["history"]["loss"], rtol=1e-5)


@needs_mpi
def test_batchnorm_moving_statistics_agree_on_every_rank(tmp_path: Path) -> None:
    """Each rank normalises with its shard's batch statistics (DDP without SyncBatchNorm); the
    moving statistics are averaged after every step, so the ranks hold one model (a second
    ``fit`` would otherwise stop at its start-time check) close to the 1-process run's."""
    p, _ = run("batchnorm", tmp_path / "two", "32")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    a, b = diag(tmp_path / "two", 0)[1]["moving"], diag(tmp_path / "two", 1)[1]["moving"]
    assert np.array_equal(a, b)
    p, _ = run("batchnorm", tmp_path / "one", "32", ranks=1)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    np.testing.assert_allclose(a, diag(tmp_path / "one", 0)[1]["moving"], rtol=0.05, atol=0.02)


@needs_mpi
def test_an_exception_on_rank_1_aborts_the_job(tmp_path: Path) -> None:
    p, took = run("raise", tmp_path, "32")
    assert p.returncode != 0
    assert took < 30
    err = p.stdout + p.stderr
    assert "rank 1 of 2 failed" in err and "injected failure on rank 1" in err


@needs_mpi
def test_a_rank_that_stops_answering_ends_in_a_timeout(tmp_path: Path) -> None:
    p, took = run("hang", tmp_path, "32", WORKER_TIMEOUT="3")
    assert p.returncode != 0
    assert took < 30
    err = p.stdout + p.stderr
    assert "DistributedTimeoutError" in err and "did not complete within" in err


@needs_mpi
def test_a_killed_rank_ends_the_job(tmp_path: Path) -> None:
    p, took = run("kill", tmp_path, "32")
    assert p.returncode != 0 and took < 30


@needs_mpi
def test_a_rank_with_another_model_is_an_error_naming_the_first_mismatch(
        tmp_path: Path) -> None:
    p, took = run("mismatch", tmp_path, "32")
    assert p.returncode != 0 and took < 30
    err = p.stdout + p.stderr
    assert "rank 1's model differs from rank 0's at entry 1" in err
    assert "conv2d/kernel" in err


@needs_mpi
def test_ranks_reading_different_batches_is_an_error(tmp_path: Path) -> None:
    p, took = run("diffdata", tmp_path, "32")
    assert p.returncode != 0 and took < 30
    assert "rank 1 read another first batch than rank 0" in p.stdout + p.stderr


@needs_mpi
@pytest.mark.parametrize("how", ["sigint", "stop"])
def test_ctrl_c_or_stop_training_on_one_rank_stops_every_rank_after_the_same_batch(
        tmp_path: Path, how: str) -> None:
    p, _ = run(how, tmp_path, "32")
    assert p.returncode == 0, p.stderr[-3000:]
    m0, _ = diag(tmp_path, 0)
    m1, _ = diag(tmp_path, 1)
    assert len(m0["crcs"]) == 3 and m0["crcs"] == m1["crcs"]
    assert m0["interrupted"] == m1["interrupted"] == (how == "sigint")


@needs_mpi
def test_a_custom_loop_with_attach_and_allreduce_gradients(tmp_path: Path) -> None:
    p, _ = run("loop", tmp_path, "32")
    assert p.returncode == 0, p.stderr[-3000:]
    m0, a0 = diag(tmp_path, 0)
    m1, a1 = diag(tmp_path, 1)
    assert m0["crcs"] == m1["crcs"] and len(m0["crcs"]) == 2 * 7 + 1
    np.testing.assert_array_equal(a0["weights"], a1["weights"])
    assert m0["stats"]["buckets"] >= 2 and m0["stats"]["steps"] == 14
    assert m0["total"] == 3.0  # 1 + 2


# -- one process, no MPI --------------------------------------------------------------------

def test_world_size_one_needs_no_mpi() -> None:
    code = ("import sys, numpy as np, fastcnn as fc; from fastcnn import distributed as d; "
            "assert d.init() == 1 and d.rank() == 0 and d.is_main() and d.backend() == 'self';"
            "m = fc.models.seeds_cnn((1, 8, 8), padding='same', seed=0);"
            "m.compile('sgd', 'sparse_categorical_crossentropy');"
            "x = np.zeros((8, 1, 8, 8), np.float32); y = np.arange(8) % 10;"
            "m.fit(x, y, batch_size=4, verbose=0); d.barrier(); d.shutdown();"
            "print('mpi4py' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, env=_env())
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"


def test_the_shard_rule() -> None:
    assert [shard_range(33, r, 2) for r in range(2)] == [(0, 16), (16, 33)]
    assert [shard_range(8, r, 4) for r in range(4)] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    with pytest.raises(ValueError, match="rank must be in"):
        shard_range(8, 2, 2)
    items = [(np.arange(3), np.arange(3))]
    assert list(local_items(iter(items), "fit")) == items  # world size 1: untouched


def test_gradient_reducer_at_world_size_one_keeps_the_gradients_and_unhooks() -> None:
    m = fc.models.seeds_cnn((1, 8, 8), padding="same", seed=0)
    m.compile("sgd", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    y = np.arange(4)
    _, d = m.loss.value_and_grad(m(x, training=True), y)
    m.backward(d, compute_dx=False)
    want = [g.copy() for _, g in m.parameters()]
    r = dist.GradientReducer(m, bucket_mb=0.001)
    m(x, training=True)
    m.backward(d, compute_dx=False)  # hooks start the buckets
    r.wait()
    assert r.stats["buckets"] >= 3 and r.stats["steps"] == 1
    for g, w in zip((g for _, g in m.parameters()), want, strict=True):
        np.testing.assert_array_equal(g, w)
    m(x, training=True)
    m.backward(d, compute_dx=False)
    m(x, training=True)
    with pytest.raises(dist.DistributedError, match="backward twice"):
        m.backward(d, compute_dx=False)
    r.wait()
    with r.no_sync():  # accumulation: the first pass local, the last one reduced
        m(x, training=True)
        m.backward(d, compute_dx=False)
    m(x, training=True)
    m.backward(d, compute_dx=False, accumulate=True)
    r.wait()
    for g, w in zip((g for _, g in m.parameters()), want, strict=True):
        np.testing.assert_allclose(g, 2 * w, rtol=1e-6, atol=1e-7)
    r.close()
    assert all("backward" not in vars(layer) for layer in m.layers)


def test_the_metrics_state_is_what_reset_rebinds() -> None:
    acc = fc.metrics.get("accuracy")
    assert sorted(_state_names(acc)) == ["_count", "_total"]
    auc = fc.metrics.AUC(num_thresholds=7)
    names = _state_names(auc)
    assert "num_thresholds" not in names and "true_positives" in names


def test_init_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="backend must be"):
        dist.init("gloo")
    with pytest.raises(ValueError, match="device must be"):
        dist.init(device="tpu")
    with pytest.raises(ValueError, match="timeout must be"):
        dist.init(timeout=0)
    with pytest.raises(ValueError, match="bucket_mb"):
        dist.GradientReducer(fc.models.seeds_cnn((1, 8, 8), padding="same"), bucket_mb=-1)


def test_a_timeout_names_the_collective() -> None:
    work = _comm.Work(lambda: False, 0.05)
    with pytest.raises(dist.DistributedTimeoutError, match="the test collective did not"):
        work.wait("the test collective")


def test_launcher_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    assert not _comm.launched_by_mpi()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")
    assert not _comm.launched_by_mpi()
    monkeypatch.setenv("PMI_RANK", "0")
    assert _comm.launched_by_mpi()


def test_nccl_one_rank_end_to_end() -> None:
    """One GPU rank through NCCL: fit reduces its gradients with cupy.cuda.nccl."""
    if not fc.info()["cuda_available"]:
        pytest.skip("needs a GPU with fastcnn's CUDA module and CuPy")
    pytest.importorskip("cupy.cuda.nccl")
    try:
        dist.init("nccl", device="cuda")
        assert dist.backend() == "self+nccl"
        m = fc.models.seeds_cnn((1, 8, 8), padding="same", seed=0).to("cuda", strict=True)
        m.compile("sgd", "sparse_categorical_crossentropy")
        ref = fc.models.seeds_cnn((1, 8, 8), padding="same", seed=0).to("cuda", strict=True)
        ref.compile("sgd", "sparse_categorical_crossentropy")
        (x, y), _ = fc.datasets.load_digits()
        m.fit(x[:128], y[:128], batch_size=32, seed=0, verbose=0)
        assert _state.device_comm() is not None
    finally:
        dist.shutdown()
    ref.fit(x[:128], y[:128], batch_size=32, seed=0, verbose=0)
    for a, b in zip(m.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_attach_at_world_size_one_changes_nothing() -> None:
    (x, y), _ = fc.datasets.load_digits()

    def trained(attach: bool) -> list[np.ndarray]:
        m = fc.models.seeds_cnn((1, 8, 8), padding="same", seed=0)
        m.compile("adam", "sparse_categorical_crossentropy")
        if attach:
            dist.attach(m, bucket_mb=0.01)
        m.fit(x[:96], y[:96], batch_size=32, seed=0, verbose=0)
        dist.detach(m)
        return m.get_weights()

    for a, b in zip(trained(True), trained(False), strict=True):
        np.testing.assert_array_equal(a, b)


@needs_mpi
def test_the_cli_trains_distributed(tmp_path: Path) -> None:
    assert MPIEXEC is not None
    out = tmp_path / "model.npz"
    cmd = [MPIEXEC, "-n", "2", "-prepend-rank", sys.executable, "-m", "fastcnn", "train",
           "--distributed", "--epochs", "1", "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_env())
    assert p.returncode == 0, p.stderr[-3000:]
    assert out.exists()
    assert p.stdout.count("test accuracy") == 1 and "[0] test accuracy" in p.stdout
    assert not [ln for ln in p.stdout.splitlines() if ln.startswith("[1]")]
