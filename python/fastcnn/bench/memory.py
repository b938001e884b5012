"""Peak memory of the seeds' CNN training step: fastcnn against PyTorch, each in a fresh process.

Every implementation runs alone in a child process (``python -m fastcnn.bench.memory``), so
nothing one of them allocated or cached can count against another. The child:

1. imports its framework, builds the model, its optimizer and the data (``steps`` batches of
   ``batch`` images), and collects garbage;
2. reads its resident set size (``VmRSS``) and resets the kernel's high-water mark of it
   (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0);
3. runs ``steps`` training steps;
4. reports ``VmHWM - VmRSS before``: the most memory the steps added at any moment, in MiB. It
   holds everything a step needs (activations kept for the backward, gradients, optimizer
   state, workspaces, pooling indices), what the allocators cache, and one-time costs of the
   first step (thread stacks, JIT code), for every implementation alike.

Implementations (the same network, weights and batch as :mod:`fastcnn.bench.training`):

* ``fastcnn``: the bare :mod:`fastcnn.ops` step (:func:`~fastcnn.bench.training.fastcnn_step`);
* ``fastcnn.fit``: ``Sequential.fit`` for one epoch of ``steps`` batches (what a user runs);
* ``torch``: ``nn.Sequential``, ``loss.backward()``, ``torch.optim.SGD``.

Linux only: elsewhere (or where ``clear_refs`` can't be written) every row says why it was
skipped.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["IMPLS", "measure_child", "run_memory"]

IMPLS = ("fastcnn", "fastcnn.fit", "torch")
_MIB = 1024.0


def _status_kib() -> dict[str, int]:
    """VmRSS and VmHWM of this process in KiB (empty when /proc is unavailable)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _reset_peak() -> None:
    """Reset VmHWM to the current VmRSS (raises OSError where the kernel doesn't allow it)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _build(impl: str, batch: int, steps: int, threads: int) -> Any:
    """A callable running ``steps`` training steps of ``impl`` (everything allocated up front)."""
    import numpy as np

    from . import training

    x, y = training.data(batch * steps)
    pairs = [(np.ascontiguousarray(x[i:i + batch]), y[i:i + batch].copy())
             for i in range(0, batch * steps, batch)]
    if impl == "fastcnn":
        import fastcnn

        fastcnn.set_num_threads(threads)
        step = training.fastcnn_step(training.init_params())
        return lambda: [step(a, b) for a, b in pairs]
    if impl == "fastcnn.fit":
        import fastcnn

        fastcnn.set_num_threads(threads)
        model = training.seeds_model()
        return lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=True,
                                 seed=0)
    if impl == "torch":
        import torch

        torch.set_num_threads(threads)
        step = training.torch_step(torch, training.init_params())
        return lambda: [step(a, b) for a, b in pairs]
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")


def measure_child(impl: str, batch: int, steps: int, threads: int) -> dict[str, Any]:
    """Run in the child process: build, reset the high-water mark, train, report (MiB)."""
    run = _build(impl, batch, steps, threads)
    gc.collect()
    before = _status_kib()
    _reset_peak()
    run()
    after = _status_kib()
    if "VmHWM" not in after or "VmRSS" not in before:
        raise OSError("/proc/self/status has no VmRSS / VmHWM")
    return {"impl": impl, "batch": batch, "steps": steps, "threads": threads,
            "rss_before_mib": before["VmRSS"] / _MIB,
            "peak_mib": (after["VmHWM"] - before["VmRSS"]) / _MIB,
            "rss_after_mib": after["VmRSS"] / _MIB}


def _run_one(impl: str, batch: int, steps: int, threads: int, timeout_s: float,
             env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "fastcnn.bench.memory", "--impl", impl, "--batch", str(batch),
           "--steps", str(steps), "--threads", str(threads)]
    row: dict[str, Any] = {"impl": impl, "batch": batch, "steps": steps, "threads": threads}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "PYTHONWARNINGS": "ignore", **env}, check=False)
    except subprocess.TimeoutExpired:
        row["skipped"] = f"the child process ran over {timeout_s:.0f} s"
        return row
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        row["skipped"] = f"the child process failed: {lines[-1] if lines else done.returncode}"
        return row
    row.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return row


def run_memory(batches: Sequence[int], threads: int, *, torch: bool = True, steps: int = 3,
               isa: str | None = None, timeout_s: float = 300.0) -> dict[str, Any]:
    """Peak extra memory of ``steps`` training steps per implementation and batch.

    Args:
        batches: batch sizes (the seeds' CNN on (batch, 1, 28, 28) inputs).
        threads: the thread count every implementation runs with.
        torch: include PyTorch (its child fails, and is reported skipped, without it).
        steps: training steps per child.
        isa: cap fastcnn's kernels at this ISA in the children (``FASTCNN_ISA``).
        timeout_s: limit per child process.

    Returns:
        ``{"rows": [...], "method": str}``; each row has ``impl``, ``batch``, ``threads`` and
        either ``peak_mib`` (with ``rss_before_mib``, ``rss_after_mib``) and, when PyTorch was
        measured at that batch, ``x_torch`` (= peak / PyTorch's peak: <= 1 meets the target), or
        ``skipped`` with the reason. ``{"skipped": reason}`` off Linux.
    """
    if not sys.platform.startswith("linux"):
        return {"skipped": "needs Linux (/proc/self/status and clear_refs)"}
    impls = [i for i in IMPLS if torch or i != "torch"]
    env = {"FASTCNN_ISA": isa} if isa else {}
    rows = [_run_one(impl, b, steps, threads, timeout_s, env) for b in batches for impl in impls]
    for b in batches:
        ref = next((r.get("peak_mib") for r in rows
                    if r["impl"] == "torch" and r["batch"] == b), None)
        for r in rows:
            if r["batch"] == b and ref and "peak_mib" in r:
                r["x_torch"] = r["peak_mib"] / ref
    return {"rows": rows, "method": "VmHWM - VmRSS over the steps, one fresh process each "
                                    "(fastcnn.bench.memory)"}


def main(argv: Sequence[str] | None = None) -> int:
    """Child entry point: prints one JSON line (see :func:`measure_child`)."""
    p = argparse.ArgumentParser(prog="python -m fastcnn.bench.memory",
                                description="peak memory of the seeds' CNN training step")
    p.add_argument("--impl", choices=IMPLS, required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.batch < 1 or a.steps < 1 or a.threads < 1:
        p.error("--batch, --steps and --threads must be >= 1")
    print(json.dumps(measure_child(a.impl, a.batch, a.steps, a.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
