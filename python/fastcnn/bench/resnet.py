"""The ResNet-20 training step (CIFAR shapes, 3x32x32) against the same network in PyTorch CPU.

``fastcnn bench --suite resnet`` (``benchmarks/run_resnet.py``): one SGD step with momentum
(forward, loss, backward, update; BatchNorm in training mode) of :func:`fastcnn.models.resnet`
at batch 128, fastcnn's ``train_on_batch`` against PyTorch's ``zero_grad / forward /
cross_entropy / backward / step`` on its twin (``model.to_torch(logits=True)``: the same layers
and weights), interleaved round-robin in one process (:func:`fastcnn.bench.timing.measure`) at
each thread count. Napkin maths: ResNet-20 is 82 MFLOP per image forward (a multiply-add counted
as 2; the convolutions are 99 % of it), about 3x that per training step: 31.7 GFLOP per step at
batch 128, against a 2-core AVX2 machine's ~100 GFLOP/s FMA peak: ~0.3 s at best.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import numpy as np

from .common import Config, import_torch
from .timing import ThreadControl, measure

__all__ = ["run_resnet_benchmark", "table"]

BATCH = 128


def _fastcnn_step(depth: int, lr: float) -> tuple[Any, Any]:
    from .. import optimizers
    from ..models import resnet

    model = resnet(depth, (3, 32, 32), 10, seed=0)
    model.compile(optimizers.SGD(lr, momentum=0.9), "sparse_categorical_crossentropy")
    return model, lambda x, y: float(model.train_on_batch(x, y))


def _torch_step(torch: Any, model: Any, lr: float) -> Any:
    net = model.to_torch(logits=True)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    ce = torch.nn.functional.cross_entropy

    def step(x: Any, y: Any) -> float:
        opt.zero_grad(set_to_none=True)
        loss = ce(net(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def run_resnet_benchmark(cfg: Config, *, progress: TextIO | None = sys.stderr,
                         depth: int = 20, batch: int = BATCH) -> dict[str, Any]:
    """Time the ResNet training step (see the module docstring).

    Returns:
        ``{"schema": "fastcnn.bench.resnet/1", "batch", "depth", "gflop_per_step", "rows":
        [{"threads", "fastcnn_ms", "torch_ms", "speedup", "fastcnn_img_s", "torch_img_s"}]}``
        (torch entries None without PyTorch).
    """
    torch, note = import_torch(cfg) if cfg.torch else (None, "skipped (--no-torch)")
    rng = np.random.default_rng(cfg.seed)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    lr = 1e-3  # small: a steady state over the repeats (the weights barely move)
    model, ours = _fastcnn_step(depth, lr)
    fns: dict[str, Any] = {"fastcnn": lambda: ours(x, y)}
    if torch is not None:
        theirs = _torch_step(torch, model, lr)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        fns["torch"] = lambda: theirs(tx, ty)
    flop = 3 * model.flops * batch  # a training step: ~3x the forward FLOPs
    tc = ThreadControl(torch)
    rows = []
    try:
        for n in cfg.threads:
            tc.set(n)
            t = measure(fns, repeats=cfg.repeats, warmup=cfg.warmup,
                        min_sample_s=cfg.min_sample_s, gap_s=cfg.gap_s)
            f_ms = t["fastcnn"].median_ms
            t_ms = t["torch"].median_ms if "torch" in t else None
            rows.append({"threads": n, "fastcnn_ms": f_ms, "torch_ms": t_ms,
                         "speedup": t_ms / f_ms if t_ms else None,
                         "fastcnn_img_s": batch / f_ms * 1e3,
                         "torch_img_s": batch / t_ms * 1e3 if t_ms else None})
            if progress is not None:
                print(f"resnet{depth} b{batch} {n} thread(s): fastcnn {f_ms:.1f} ms"
                      + (f", torch {t_ms:.1f} ms ({t_ms / f_ms:.2f}x)" if t_ms else ""),
                      file=progress)
    finally:
        tc.restore()
    return {"schema": "fastcnn.bench.resnet/1", "depth": depth, "batch": batch,
            "gflop_per_step": flop / 1e9, "torch": note,
            "rows": rows}


def table(doc: dict[str, Any]) -> str:
    """The results as a text table: median ms per step, images/s, speed-up over PyTorch."""
    lines = [f"ResNet-{doc['depth']} training step, batch {doc['batch']}, 3x32x32 "
             f"({doc['gflop_per_step']:.1f} GFLOP; {doc['torch']})",
             f"{'threads':>7}  {'fastcnn ms':>10}  {'torch ms':>9}  {'img/s':>7}  "
             f"{'torch img/s':>11}  {'speed-up':>8}"]
    for r in doc["rows"]:
        t = f"{r['torch_ms']:9.1f}" if r["torch_ms"] else f"{'-':>9}"
        ti = f"{r['torch_img_s']:11.0f}" if r["torch_img_s"] else f"{'-':>11}"
        sp = f"{r['speedup']:7.2f}x" if r["speedup"] else f"{'-':>8}"
        lines.append(f"{r['threads']:>7}  {r['fastcnn_ms']:10.1f}  {t}  "
                     f"{r['fastcnn_img_s']:7.0f}  {ti}  {sp}")
    return "\n".join(lines)
