"""The named shape suites of the benchmark, as data.

A suite is a list of :class:`Layer` shapes; each shape lists the passes that are timed on it, and
each (shape, pass) pair is one :class:`Case`. The work of a case is counted once, here:

* convolution and dense layers: FLOPs, 2 per multiply-add (``2*N*K*P*Q*C/groups*R*S`` for a
  convolution pass, ``2*N*in*out`` for a dense pass; bias additions and the bias gradient are
  not counted). The full backward is the data pass plus the weights pass, twice the forward.
* ReLU and max pooling: bytes read plus bytes written, once each, as float32 (and int64 indices),
  the minimum traffic of the op: ReLU forward 4+4 bytes per element, backward 4+4+4 (dy, y ->
  dx); pooling forward ``4*|x| + 4*|y|`` (+ ``8*|y|`` for the indices), backward
  ``4*|dy| + 8*|idx| + 4*|dx|``; average pooling ``4*|x| + 4*|y|`` both ways; the global pools
  ``4*|x| + 4*|y|`` (+ ``8*|y|`` for the max's indices, returned or read).

Passes: ``fwd``; ``fwd_relu`` (convolution with the ReLU applied, fused in fastcnn's GEMM
epilogue, as the layers run it); ``fwd_idx`` (pooling that also returns the argmax indices, as
training runs it); ``fwd_out`` / ``bwd_out`` (ReLU, and max pooling's backward, into a
preallocated ``out`` array: the kernel's bandwidth without a fresh array's page faults;
ImageNet suite); ``bwd`` (every gradient: dx, dw, db); ``bwd_data`` (dx only: the compiled
module's ``compute_dw`` flag off) and ``bwd_weights`` (dw and db only: ``compute_dx=False``).
The suites:

* ``seeds``: the layers of the seeds' CNN on 28x28 MNIST-sized inputs (Conv 1->32 3x3, Conv
  32->64 3x3, MaxPool 2, Dense 9216->128, Dense 128->10 and the three ReLUs) at batch 64 and 256.
* ``imagenet``: ResNet-like layers at batch 32: 3x3 convolutions 64->64 at 56x56 and 128->128 at
  28x28 (padding 1), the 7x7 stride-2 stem 3->64 at 224x224 (padding 3), 2x2 max pooling and
  ReLU on (32, 64, 112, 112), and a 4096->1000 dense layer at batch 256.
  The pooling family: 2x2/2 and 3x3/2 (pad 1) average pools on (32, 64, 112, 112), 3x3/1
  (pad 1) on (32, 64, 56, 56), and the global average / max pools on (2048, 64, 8, 8).
* ``smoke``: tiny shapes of every op, for the test suite (not part of ``all``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

__all__ = [
    "PASSES",
    "SUITES",
    "Case",
    "Layer",
    "cases",
    "suite_names",
]

# the passes each op supports, in the order they are timed
PASSES: dict[str, tuple[str, ...]] = {
    "conv2d": ("fwd", "fwd_relu", "bwd", "bwd_data", "bwd_weights"),
    "max_pool2d": ("fwd", "fwd_idx", "bwd", "bwd_out"),
    "relu": ("fwd", "bwd", "fwd_out", "bwd_out"),
    "linear": ("fwd", "bwd"),
    # pooling family (issue 17)
    "avg_pool2d": ("fwd", "bwd", "bwd_out"),
    "global_avg_pool2d": ("fwd", "bwd"),
    "global_max_pool2d": ("fwd", "fwd_idx", "bwd"),
}

POOL_OPS = ("max_pool2d", "avg_pool2d")  # the windowed pools (dims N C H W k stride [pad])
GLOBAL_POOL_OPS = ("global_avg_pool2d", "global_max_pool2d")  # dims N C H W


@dataclass(frozen=True)
class Layer:
    """One layer shape of a suite.

    ``dims`` holds the op's sizes: conv2d ``N C H W K R S stride pad``; max_pool2d ``N C H W k
    stride``; relu ``N C H W`` (``H = W = 1`` for a flat (N, C) tensor); linear ``N fin fout``.
    """

    suite: str
    name: str  # unique within the suite, e.g. "b64.conv2"
    op: str
    dims: tuple[tuple[str, int], ...]
    passes: tuple[str, ...]
    label: str = field(default="", compare=False)

    def dim(self, key: str) -> int:
        """One size from :attr:`dims`."""
        return dict(self.dims)[key]

    @property
    def d(self) -> dict[str, int]:
        """:attr:`dims` as a dict."""
        return dict(self.dims)

    def out_hw(self) -> tuple[int, int]:
        """Output (P, Q) of a convolution or pooling layer."""
        d = self.d
        if self.op == "conv2d":
            p = (d["H"] + 2 * d["pad"] - d["R"]) // d["stride"] + 1
            q = (d["W"] + 2 * d["pad"] - d["S"]) // d["stride"] + 1
            return p, q
        if self.op in POOL_OPS:
            pad = d.get("pad", 0)
            return ((d["H"] + 2 * pad - d["k"]) // d["stride"] + 1,
                    (d["W"] + 2 * pad - d["k"]) // d["stride"] + 1)
        raise ValueError(f"{self.op} has no spatial output")


@dataclass(frozen=True)
class Case:
    """One timed (layer, pass) pair."""

    layer: Layer
    pass_: str

    @property
    def id(self) -> str:
        """``suite.name.pass``, e.g. ``seeds.b64.conv2.bwd``; what ``--filter`` matches."""
        return f"{self.layer.suite}.{self.layer.name}.{self.pass_}"

    @property
    def unit(self) -> str:
        """``"flop"`` (rate in GFLOP/s) or ``"byte"`` (rate in GB/s)."""
        return "flop" if self.layer.op in ("conv2d", "linear") else "byte"

    @property
    def work(self) -> int:
        """FLOPs or bytes of one call (see the module docstring)."""
        lay, p = self.layer, self.pass_
        d = lay.d
        if lay.op == "conv2d":
            P, Q = lay.out_hw()
            macs = d["N"] * d["K"] * P * Q * d["C"] * d["R"] * d["S"]
            return 4 * macs if p == "bwd" else 2 * macs
        if lay.op == "linear":
            macs = d["N"] * d["fin"] * d["fout"]
            return 4 * macs if p == "bwd" else 2 * macs
        if lay.op == "relu":
            n = d["N"] * d["C"] * d["H"] * d["W"]
            return 12 * n if p.startswith("bwd") else 8 * n
        if lay.op == "max_pool2d":
            P, Q = lay.out_hw()
            nx = d["N"] * d["C"] * d["H"] * d["W"]
            ny = d["N"] * d["C"] * P * Q
            return {"fwd": 4 * nx + 4 * ny, "fwd_idx": 4 * nx + 12 * ny,
                    "bwd": 12 * ny + 4 * nx, "bwd_out": 12 * ny + 4 * nx}[p]
        if lay.op == "avg_pool2d":  # x -> y; dy -> dx (no indices)
            P, Q = lay.out_hw()
            return 4 * d["N"] * d["C"] * (d["H"] * d["W"] + P * Q)
        if lay.op in GLOBAL_POOL_OPS:  # x (N, C, H, W) <-> y (N, C) [+ int64 indices]
            nx, ny = d["N"] * d["C"] * d["H"] * d["W"], d["N"] * d["C"]
            idx = 8 * ny if p == "fwd_idx" or (p == "bwd" and lay.op == "global_max_pool2d") else 0
            return 4 * nx + 4 * ny + idx
        raise ValueError(f"unknown op {lay.op!r}")


def _conv(suite: str, name: str, N: int, C: int, H: int, K: int, R: int, *, stride: int = 1,
          pad: int = 0, passes: tuple[str, ...] | None = None) -> Layer:
    label = (f"conv {C}->{K} {R}x{R}" + (f" s{stride}" if stride > 1 else "")
             + (f" p{pad}" if pad else "") + f" @{H}x{H} N={N}")
    dims = (("N", N), ("C", C), ("H", H), ("W", H), ("K", K), ("R", R), ("S", R),
            ("stride", stride), ("pad", pad))
    return Layer(suite, name, "conv2d", dims, passes or PASSES["conv2d"], label)


def _pool(suite: str, name: str, N: int, C: int, H: int, k: int = 2, *,
          passes: tuple[str, ...] = ("fwd", "fwd_idx", "bwd")) -> Layer:
    dims = (("N", N), ("C", C), ("H", H), ("W", H), ("k", k), ("stride", k))
    return Layer(suite, name, "max_pool2d", dims, passes, f"maxpool {k}x{k} ({N},{C},{H},{H})")


def _avg(suite: str, name: str, N: int, C: int, H: int, k: int, stride: int, pad: int = 0
         ) -> Layer:
    dims = (("N", N), ("C", C), ("H", H), ("W", H), ("k", k), ("stride", stride), ("pad", pad))
    return Layer(suite, name, "avg_pool2d", dims, PASSES["avg_pool2d"],
                 f"avgpool {k}x{k}/{stride} pad {pad} ({N},{C},{H},{H})")


def _global(suite: str, name: str, op: str, N: int, C: int, H: int) -> Layer:
    return Layer(suite, name, op, (("N", N), ("C", C), ("H", H), ("W", H)), PASSES[op],
                 f"{op.replace('_pool2d', '')} ({N},{C},{H},{H})")


def _relu(suite: str, name: str, N: int, C: int, H: int = 1, *,
          passes: tuple[str, ...] = ("fwd", "bwd")) -> Layer:
    shape = f"({N},{C},{H},{H})" if H > 1 else f"({N},{C})"
    return Layer(suite, name, "relu", (("N", N), ("C", C), ("H", H), ("W", H)), passes,
                 f"relu {shape}")


def _dense(suite: str, name: str, N: int, fin: int, fout: int) -> Layer:
    return Layer(suite, name, "linear", (("N", N), ("fin", fin), ("fout", fout)),
                 PASSES["linear"], f"dense {fin}->{fout} N={N}")


def _seeds(batches: tuple[int, ...] = (64, 256)) -> list[Layer]:
    out: list[Layer] = []
    for n in batches:
        b = f"b{n}"
        out += [
            _conv("seeds", f"{b}.conv1", n, 1, 28, 32, 3),
            _relu("seeds", f"{b}.relu1", n, 32, 26),
            _conv("seeds", f"{b}.conv2", n, 32, 26, 64, 3),
            _relu("seeds", f"{b}.relu2", n, 64, 24),
            _pool("seeds", f"{b}.pool", n, 64, 24),
            _dense("seeds", f"{b}.dense1", n, 9216, 128),
            _relu("seeds", f"{b}.relu3", n, 128),
            _dense("seeds", f"{b}.dense2", n, 128, 10),
        ]
    return out


_IMAGENET_CONV_PASSES = ("fwd", "bwd", "bwd_data", "bwd_weights")


def _imagenet() -> list[Layer]:
    s = "imagenet"
    return [
        _conv(s, "conv7x7s2", 32, 3, 224, 64, 7, stride=2, pad=3, passes=_IMAGENET_CONV_PASSES),
        _relu(s, "relu", 32, 64, 112, passes=PASSES["relu"]),
        _pool(s, "pool", 32, 64, 112, passes=PASSES["max_pool2d"]),
        _conv(s, "conv3x3.64", 32, 64, 56, 64, 3, pad=1, passes=_IMAGENET_CONV_PASSES),
        _conv(s, "conv3x3.128", 32, 128, 28, 128, 3, pad=1, passes=_IMAGENET_CONV_PASSES),
        _dense(s, "dense", 256, 4096, 1000),
        # pooling family (issue 17): DenseNet / ResNet-D style average pools, and the global
        # pools of a CIFAR ResNet's head (8x8 planes, 64 channels, batch 2048: 33 MB)
        _avg(s, "avgpool2x2", 32, 64, 112, 2, 2),
        _avg(s, "avgpool3x3s2", 32, 64, 112, 3, 2, 1),
        _avg(s, "avgpool3x3s1", 32, 64, 56, 3, 1, 1),
        _global(s, "gap8x8", "global_avg_pool2d", 2048, 64, 8),
        _global(s, "gmp8x8", "global_max_pool2d", 2048, 64, 8),
    ]


def _smoke() -> list[Layer]:
    s = "smoke"
    return [
        _conv(s, "conv", 2, 3, 8, 4, 3, pad=1),
        _relu(s, "relu", 2, 4, 8, passes=PASSES["relu"]),
        _pool(s, "pool", 2, 4, 8, passes=PASSES["max_pool2d"]),
        _dense(s, "dense", 2, 16, 8),
        _avg(s, "avgpool", 2, 4, 9, 3, 2, 1),
        _global(s, "gap", "global_avg_pool2d", 2, 4, 5),
        _global(s, "gmp", "global_max_pool2d", 2, 4, 5),
    ]


SUITES: dict[str, list[Layer]] = {
    "seeds": _seeds(),
    "imagenet": _imagenet(),
    "smoke": _smoke(),
}

# the batch sizes of the whole training-step benchmark, per suite
TRAIN_BATCHES: dict[str, tuple[int, ...]] = {"seeds": (64, 256), "smoke": (4,)}


def suite_names(suite: str) -> list[str]:
    """The suites a ``--suite`` value stands for (``all`` = seeds + imagenet)."""
    if suite == "all":
        return ["seeds", "imagenet"]
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose from "
                         f"{', '.join([*SUITES, 'all'])}")
    return [suite]


def cases(suite: str, *, quick: bool = False, filters: list[str] | None = None) -> list[Case]:
    """Every case of ``suite`` (``seeds``, ``imagenet``, ``smoke`` or ``all``).

    Args:
        quick: only batch 64 of the seeds suite (the imagenet layers are dropped).
        filters: shell-style patterns (``fnmatch``) matched against :attr:`Case.id`; a case is
            kept when any pattern matches. None or empty keeps all.
    """
    layers: list[Layer] = []
    for name in suite_names(suite):
        if quick and name == "imagenet":
            continue
        layers += [lay for lay in SUITES[name]
                   if not (quick and name == "seeds" and not lay.name.startswith("b64."))]
    out = [Case(lay, p) for lay in layers for p in lay.passes]
    if filters:
        out = [c for c in out if any(fnmatch.fnmatchcase(c.id, f) for f in filters)]
    return out
