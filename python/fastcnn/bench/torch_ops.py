"""fastcnn.torch's operators against PyTorch's own, and the cost of crossing into fastcnn.

:func:`torch_ops_benchmark` times, for each case, the same op three ways on the CPU: through
:mod:`fastcnn.torch` on tensors (what a PyTorch model that went through ``accelerate`` runs),
through :mod:`fastcnn.ops` on NumPy arrays (the kernels alone), and PyTorch's own op. The
difference between the first two is the crossing: the checks, the autograd node when a
gradient is needed, the tensor -> NumPy view and back. A tiny ``relu`` (16 elements) shows it
bare, without and with autograd.

Method: the three are timed round-robin (one sample each per round, in an order rotated every
round), each sample the mean of enough calls to last ``min_sample_s``; the reported time is the
median over ``repeats`` rounds. ``torch.set_num_threads`` and ``fastcnn.set_num_threads`` are set
to the same count. Needs torch.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from .. import num_threads, ops, set_num_threads

__all__ = ["format_table", "torch_ops_benchmark"]


def _cases(torch: Any, ft: Any, quick: bool) -> list[tuple[str, str, dict[str, Callable[[], Any]]]]:
    F = torch.nn.functional
    g = torch.Generator().manual_seed(0)

    def t(*shape: int, grad: bool = False) -> Any:
        return torch.randn(*shape, generator=g).requires_grad_(grad)

    n = 8 if quick else 64
    cases = []
    tiny = t(16)
    tiny_np = tiny.numpy()
    cases.append(("relu", "(16,)", {"fastcnn.torch": lambda: ft.relu(tiny),
                                    "fastcnn.ops": lambda: ops.relu(tiny_np),
                                    "torch": lambda: torch.relu(tiny)}))
    tg, tdy = t(16, grad=True), t(16)
    tdy_np = tdy.numpy()
    cases.append(("relu forward + backward", "(16,)", {
        "fastcnn.torch": lambda: torch.autograd.grad(ft.relu(tg), tg, tdy),
        "fastcnn.ops": lambda: ops.relu_backward(tdy_np, ops.relu(tiny_np)),
        "torch": lambda: torch.autograd.grad(torch.relu(tg), tg, tdy)}))
    big = t(n, 32, 26, 26)
    big_np = big.numpy()
    cases.append(("relu", f"({n}, 32, 26, 26)", {"fastcnn.torch": lambda: ft.relu(big),
                                                  "fastcnn.ops": lambda: ops.relu(big_np),
                                                  "torch": lambda: torch.relu(big)}))
    x, w, b = t(n, 32, 26, 26), t(64, 32, 3, 3), t(64)
    xn, wn, bn = x.numpy(), w.numpy(), b.numpy()
    cases.append(("conv2d", f"x ({n}, 32, 26, 26), w (64, 32, 3, 3)", {
        "fastcnn.torch": lambda: ft.conv2d(x, w, b), "fastcnn.ops": lambda: ops.conv2d(xn, wn, bn),
        "torch": lambda: F.conv2d(x, w, b)}))
    xg, wg, bg = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()
    dy = t(n, 64, 24, 24)
    dyn = dy.numpy()

    def fb(conv: Callable[..., Any]) -> Callable[[], Any]:
        return lambda: torch.autograd.grad(conv(xg, wg, bg), (xg, wg, bg), dy)

    cases.append(("conv2d forward + backward", f"x ({n}, 32, 26, 26), w (64, 32, 3, 3)", {
        "fastcnn.torch": fb(ft.conv2d),
        "fastcnn.ops": lambda: (ops.conv2d(xn, wn, bn), ops.conv2d_backward(dyn, xn, wn)),
        "torch": fb(F.conv2d)}))
    p = t(n, 64, 24, 24)
    pn = p.numpy()
    cases.append(("max_pool2d", f"({n}, 64, 24, 24), 2", {
        "fastcnn.torch": lambda: ft.max_pool2d(p, 2),
        "fastcnn.ops": lambda: ops.max_pool2d(pn, 2, return_indices=True),
        "torch": lambda: F.max_pool2d(p, 2)}))
    lx, lw, lb = t(n, 9216), t(128, 9216), t(128)
    lxn, lwn, lbn = lx.numpy(), lw.numpy(), lb.numpy()
    cases.append(("linear", f"x ({n}, 9216), w (128, 9216)", {
        "fastcnn.torch": lambda: ft.linear(lx, lw, lb),
        "fastcnn.ops": lambda: ops.linear(lxn, lwn, lbn), "torch": lambda: F.linear(lx, lw, lb)}))
    logits, labels = t(n, 10), torch.randint(0, 10, (n,), generator=g)
    ln, yn = logits.numpy(), labels.numpy()
    cases.append(("cross_entropy", f"({n}, 10)", {
        "fastcnn.torch": lambda: ft.cross_entropy(logits, labels),
        "fastcnn.ops": lambda: ops.cross_entropy(ln, yn),
        "torch": lambda: F.cross_entropy(logits, labels)}))
    return cases


def _sample(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def _time_round_robin(impls: dict[str, Callable[[], Any]], repeats: int,
                      min_sample_s: float) -> dict[str, float]:
    numbers = {}
    for name, fn in impls.items():
        fn()
        once = min(_sample(fn, 1) for _ in range(3))
        numbers[name] = max(1, int(min_sample_s / max(once, 1e-7)))
    samples: dict[str, list[float]] = {k: [] for k in impls}
    names = list(impls)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                samples[name].append(_sample(impls[name], numbers[name]))
    finally:
        if enabled:
            gc.enable()
    return {k: statistics.median(v) for k, v in samples.items()}


def torch_ops_benchmark(*, threads: int | None = None, repeats: int = 31,
                        min_sample_s: float = 0.01, quick: bool = False) -> list[dict[str, Any]]:
    """Time every case three ways (module docstring); returns one row per case.

    Args:
        threads: thread count for fastcnn and torch (default: fastcnn's current one).
        repeats: rounds (samples per implementation); the median is reported.
        min_sample_s: the least duration of one sample (calls are repeated to fill it).
        quick: batch 8 instead of 64.

    Returns:
        rows ``{"op", "shape", "fastcnn.torch_us", "fastcnn.ops_us", "torch_us",
        "crossing_us"}`` (microseconds per call; crossing = fastcnn.torch - fastcnn.ops).
    """
    import torch

    from .. import torch as ft

    before_fc, before_torch = num_threads(), torch.get_num_threads()
    n = before_fc if threads is None else int(threads)
    set_num_threads(n)
    torch.set_num_threads(n)
    rows = []
    try:
        for op, shape, impls in _cases(torch, ft, quick):
            med = _time_round_robin(impls, repeats, min_sample_s)
            rows.append({"op": op, "shape": shape, "threads": n,
                         **{f"{k}_us": v * 1e6 for k, v in med.items()},
                         "crossing_us": (med["fastcnn.torch"] - med["fastcnn.ops"]) * 1e6})
    finally:
        set_num_threads(before_fc)
        torch.set_num_threads(before_torch)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table (microseconds per call, median)."""
    head = ("op", "shape", "fastcnn.torch us", "fastcnn.ops us", "torch us", "crossing us",
            "torch / fastcnn.torch")
    body = [(r["op"], r["shape"], f"{r['fastcnn.torch_us']:.2f}", f"{r['fastcnn.ops_us']:.2f}",
             f"{r['torch_us']:.2f}", f"{r['crossing_us']:.2f}",
             f"{r['torch_us'] / r['fastcnn.torch_us']:.2f}x") for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(x, widths, strict=True)).rstrip()
             for x in [head, *body]]
    lines.insert(1, "-" * len(lines[0]))
    threads = rows[0]["threads"] if rows else "?"
    return "\n".join(lines) + (f"\n(median over rounds of many calls, {threads} thread(s); "
                               "crossing = fastcnn.torch - fastcnn.ops)")
