"""Making the ranks' models agree: :func:`broadcast_parameters` (rank 0's weights to all) and
:func:`check_consistent` (every rank's model and optimizer match rank 0's at the start).

The check compares, entry by entry in model order, each weight's name, shape, dtype and a
CRC-32 of its bytes (bit-exact), then the optimizer's class, its configuration and every state
array's name, shape and CRC. Every rank learns the first rank that differs and the first entry
where it does, and every rank raises the same :class:`DistributedError` naming both, so a
wrong seed or another architecture on one rank stops the job at once, before any training.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np

from . import _state
from ._comm import DistributedError

__all__ = ["broadcast_parameters", "check_consistent", "fingerprint"]


def _host(a: Any) -> np.ndarray:
    return np.ascontiguousarray(a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray)
                                else a)


def fingerprint(model: Any) -> list[str]:
    """One line per weight and optimizer state entry: ``name shape dtype crc32`` (and the
    optimizer's class and configuration), in a fixed order."""
    lines = []
    for layer in model.layers:
        for k, p in layer.params.items():
            a = _host(p)
            lines.append(f"weight {layer.name}/{k} shape={a.shape} dtype={a.dtype} "
                         f"trainable={layer.trainable} crc32={zlib.crc32(a.tobytes()):08x}")
    opt = getattr(model, "optimizer", None)
    if opt is not None:
        try:
            cfg = json.dumps(opt.get_config(), sort_keys=True, default=str)
        except Exception:  # a custom optimizer without a JSON config: its class only
            cfg = "?"
        lines.append(f"optimizer {type(opt).__name__} config={cfg}")
        for key in sorted(opt.state):
            for slot in sorted(opt.state[key]):
                a = _host(opt.state[key][slot])
                lines.append(f"optimizer state {key}/{slot} shape={a.shape} "
                             f"crc32={zlib.crc32(a.tobytes()):08x}")
    return lines


def _bytes(lines: list[str]) -> np.ndarray:
    return np.frombuffer("\n".join(lines).encode(), dtype=np.uint8)


def check_consistent(model: Any) -> None:
    """Raise :class:`DistributedError` on every rank when any rank's model or optimizer
    differs from rank 0's (the message names the first such rank and its first differing
    entry, with both values). Nothing to check at world size 1."""
    c = _state.comm()
    if c.size == 1:
        return
    mine = fingerprint(model)
    texts = [bytes(b).decode().split("\n") for b in c.allgather(_bytes(mine))]
    ref = texts[0]
    for r, lines in enumerate(texts[1:], start=1):
        if lines == ref:
            continue
        for i in range(max(len(lines), len(ref))):
            a = ref[i] if i < len(ref) else "(nothing)"
            b = lines[i] if i < len(lines) else "(nothing)"
            if a != b:
                raise DistributedError(
                    f"rank {r}'s model differs from rank 0's at entry {i + 1} -- rank 0: "
                    f"{a!s}; rank {r}: {b!s}. Every rank must build the same architecture "
                    f"with the same seed (Sequential(..., seed=s)) and compile the same "
                    f"optimizer, or call fastcnn.distributed.broadcast_parameters(model) "
                    f"before training")


def broadcast_parameters(model: Any, root: int = 0) -> None:
    """Overwrite every rank's weights (trainable or not) with rank ``root``'s, in place (also
    for a model on the GPU, through the host). The architectures must match; the optimizer's
    state is not sent (resume from one checkpoint file on every rank instead)."""
    c = _state.comm()
    if c.size == 1:
        return
    if not getattr(model, "built", False):
        raise ValueError("broadcast_parameters: the model is not built; build it first "
                         "(input_shape= or model.build) on every rank")
    shapes = [f"{layer.name}/{k}{tuple(p.shape)}" for layer in model.layers
              for k, p in layer.params.items()]
    fp = c.allgather(_bytes(shapes))
    if any(bytes(b) != bytes(fp[root]) for b in fp):
        bad = next(r for r, b in enumerate(fp) if bytes(b) != bytes(fp[root]))
        raise DistributedError(f"broadcast_parameters: rank {bad}'s architecture differs from "
                               f"rank {root}'s (weights {bytes(fp[bad]).decode()!r} vs "
                               f"{bytes(fp[root]).decode()!r})")
    for layer in model.layers:
        for k, p in layer.params.items():
            a = np.ascontiguousarray(_host(p), dtype=np.float32).copy()
            c.ibcast(a, root).wait(f"broadcast_parameters ({layer.name}/{k})")
            if isinstance(p, np.ndarray):
                p[...] = a
            else:
                p.set(a)
