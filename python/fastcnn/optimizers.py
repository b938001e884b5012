"""Optimizers (SGD, Adam, AdamW, RMSprop) and learning-rate schedules.

Arguments use Keras' names and defaults (``learning_rate``, ``beta_1``, ``rho``,
``epsilon=1e-7``); the update formulas are PyTorch's (``torch.optim``), which the tests check
against, e.g. Adam divides by ``sqrt(v_hat) + epsilon`` and SGD momentum is
``buf = momentum * buf + g`` (the first step sets ``buf = g``), ``p -= lr * buf``.
``weight_decay`` is L2 added to the gradient for SGD / Adam / RMSprop and decoupled
(``p *= 1 - lr * weight_decay``) for AdamW.

Use
---
``optimizer.step(model)`` updates every trainable parameter in place from its gradient
(``model.named_parameters()``; a plain iterable of ``(param, grad)`` pairs works too);
``optimizer.zero_grad(model)`` sets the gradients to zero (``model.backward`` overwrites the
gradients anyway unless asked to accumulate). State (moments, step counts) is kept per
parameter name, so freezing a layer or saving / loading a model keeps it aligned;
``get_state()`` / ``set_state()`` give it as a flat dict of arrays for ``model.save``.

Devices
-------
Parameters, gradients and state live on one device: NumPy arrays on the CPU, CuPy arrays on the
GPU (``model.to("cuda")`` moves the state with the model). SGD and Adam / AdamW update through
:func:`fastcnn.ops.sgd_update` / :func:`fastcnn.ops.adam_update` (one compiled pass on either
device, bit-identical to the NumPy formulas below and to :mod:`fastcnn.reference`'s twins),
RMSprop runs the formulas with NumPy or CuPy arrays. A state array found on
the other device than its parameter (e.g. state loaded from a file, then the model moved) is
moved to the parameter's device at the next :meth:`Optimizer.step`. Step counters stay on the
host; :meth:`Optimizer.get_state` always returns NumPy arrays.

Gradient clipping
-----------------
Every optimizer takes Keras' ``clipnorm`` (each parameter's gradient rescaled to an L2 norm of
at most ``clipnorm``: ``g * clipnorm / max(||g||, clipnorm)``), ``global_clipnorm`` (all
gradients of one step rescaled together so that their joint L2 norm is at most
``global_clipnorm``) and ``clipvalue`` (each element clipped to ``[-clipvalue, clipvalue]``). At
most one of ``clipnorm`` / ``global_clipnorm`` may be set; as in Keras 3 one rule applies,
checked in the order clipnorm, global_clipnorm, clipvalue. Clipping acts on the raw gradient
(before L2 ``weight_decay`` is added), writes a clipped copy (the model's gradients are left as
``backward`` wrote them) and is deterministic: the norms are float64 sums of the float32
gradients, computed on the gradients' device and read back as one scalar per parameter
(``clipnorm``) or per step (``global_clipnorm``); a gradient within the bound is used as it is.

Learning-rate schedules are callables ``schedule(step) -> lr`` evaluated on
``optimizer.iterations`` (the number of ``step`` calls so far, i.e. batches): pass one as
``learning_rate``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np

from . import _deferred, ops
from ._arrays import array_module, host_copy, is_cupy, move, to_host
from ._registry import Registry

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineDecay",
    "ExponentialDecay",
    "LearningRateSchedule",
    "Optimizer",
    "RMSprop",
    "StepDecay",
    "get",
    "serialize",
]


# --------------------------------------------------------------------------------------------
# schedules


class LearningRateSchedule:
    """Base class: ``schedule(step) -> float``; ``get_config()`` for saving."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class StepDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step // decay_steps)`` (PyTorch's StepLR)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int,
                 decay_rate: float = 0.1) -> None:
        if decay_steps < 1:
            raise ValueError(f"StepDecay: decay_steps must be >= 1, got {decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.decay_rate = float(decay_rate)

    def __call__(self, step):
        return self.initial_learning_rate * self.decay_rate ** (int(step) // self.decay_steps)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate}


class ExponentialDecay(LearningRateSchedule):
    """Keras: ``initial_learning_rate * decay_rate ** (step / decay_steps)`` (the exponent
    floored when ``staircase``)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False) -> None:
        if decay_steps < 1:
            raise ValueError(f"ExponentialDecay: decay_steps must be >= 1, got {decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)

    def __call__(self, step):
        e = int(step) / self.decay_steps
        if self.staircase:
            e = math.floor(e)
        return self.initial_learning_rate * self.decay_rate ** e

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase}


class CosineDecay(LearningRateSchedule):
    """Keras' cosine decay, with optional linear warm-up.

    After ``warmup_steps`` (during which the rate goes linearly from
    ``initial_learning_rate`` to ``warmup_target``, when given), the rate follows
    ``lr0 * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)`` with
    ``s = min(step - warmup_steps, decay_steps)`` and ``lr0`` the warm-up target (or
    ``initial_learning_rate``).
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0,
                 warmup_target: float | None = None, warmup_steps: int = 0) -> None:
        if decay_steps < 1:
            raise ValueError(f"CosineDecay: decay_steps must be >= 1, got {decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.alpha = float(alpha)
        self.warmup_target = None if warmup_target is None else float(warmup_target)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = int(step)
        lr0 = self.initial_learning_rate
        if self.warmup_target is not None:
            if step < self.warmup_steps:
                return lr0 + (self.warmup_target - lr0) * step / self.warmup_steps
            lr0 = self.warmup_target
        s = min(max(step - self.warmup_steps, 0), self.decay_steps)
        cos = 0.5 * (1.0 + math.cos(math.pi * s / self.decay_steps))
        return lr0 * ((1.0 - self.alpha) * cos + self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


_SCHEDULES: dict[str, type[LearningRateSchedule]] = {
    c.__name__: c for c in (StepDecay, ExponentialDecay, CosineDecay)
}

#: Keras-style namespace: ``fastcnn.optimizers.schedules.ExponentialDecay``.
schedules = SimpleNamespace(**_SCHEDULES, LearningRateSchedule=LearningRateSchedule)


def _lr_from_config(value: Any) -> float | LearningRateSchedule:
    if isinstance(value, dict):
        cls = _SCHEDULES.get(value.get("class_name", ""))
        if cls is None:
            raise ValueError(f"unknown learning-rate schedule {value!r}")
        return cls(**value.get("config", {}))
    return float(value)


# --------------------------------------------------------------------------------------------
# optimizers


ParamSource = Any  # a model (with named_parameters) or an iterable of (param, grad) pairs


class Optimizer:
    """Base class of the optimizers.

    Args (every optimizer takes these, by keyword):
        learning_rate: a float >= 0 or a schedule ``schedule(step) -> lr``.
        weight_decay: L2 (decoupled for AdamW), >= 0.
        clipnorm: clip each parameter's gradient to this L2 norm (None: off).
        clipvalue: clip each gradient element to ``[-clipvalue, clipvalue]`` (None: off).
        global_clipnorm: clip all gradients together to this joint L2 norm (None: off; not
            with ``clipnorm``). See "Gradient clipping" in the module docstring.

    Attributes:
        iterations: number of :meth:`step` calls so far.
        learning_rate: the current rate (a float; a schedule is evaluated at ``iterations``).
            Assigning a float replaces any schedule (that is what LearningRateScheduler does).
        state: ``{param_name: {slot: array}}``.
    """

    name: ClassVar[str] = "optimizer"

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.001,
                 weight_decay: float = 0.0, clipnorm: float | None = None,
                 clipvalue: float | None = None,
                 global_clipnorm: float | None = None) -> None:
        self.clipnorm = _clip_arg(clipnorm, "clipnorm", type(self).__name__)
        self.clipvalue = _clip_arg(clipvalue, "clipvalue", type(self).__name__)
        self.global_clipnorm = _clip_arg(global_clipnorm, "global_clipnorm", type(self).__name__)
        if self.clipnorm is not None and self.global_clipnorm is not None:
            raise ValueError(f"{type(self).__name__}: only one of clipnorm and global_clipnorm "
                             f"can be set, got clipnorm={clipnorm}, "
                             f"global_clipnorm={global_clipnorm}")
        self.iterations = 0
        self._lr: float | LearningRateSchedule = 0.0
        self.learning_rate = learning_rate  # type: ignore[assignment]
        if weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: weight_decay must be >= 0")
        self.weight_decay = float(weight_decay)
        self.state: dict[str, dict[str, np.ndarray]] = {}

    # -- learning rate ----------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        if isinstance(self._lr, LearningRateSchedule) or callable(self._lr):
            return float(self._lr(self.iterations))
        return float(self._lr)

    @learning_rate.setter
    def learning_rate(self, value: float | LearningRateSchedule) -> None:
        if isinstance(value, LearningRateSchedule) or callable(value):
            self._lr = value
            return
        v = float(value)
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"learning_rate must be a finite number >= 0, got {value!r}")
        self._lr = v

    @property
    def schedule(self) -> LearningRateSchedule | None:
        """The learning-rate schedule, or None for a constant rate."""
        return self._lr if not isinstance(self._lr, float) else None  # type: ignore[return-value]

    # -- parameters -------------------------------------------------------------------------
    @staticmethod
    def _named(params: ParamSource) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        if hasattr(params, "named_parameters"):
            yield from params.named_parameters()
            return
        for i, pair in enumerate(params if isinstance(params, Iterable) else [params]):
            p, g = pair
            yield str(i), p, g

    def zero_grad(self, params: ParamSource) -> None:
        """Set every gradient of ``params`` (a model or ``(param, grad)`` pairs) to zero."""
        for _, _, g in self._named(params):
            g[...] = 0

    def step(self, params: ParamSource) -> None:
        """Apply one update to every ``(param, grad)`` of ``params``, in place (the gradients
        clipped first when ``clipnorm`` / ``global_clipnorm`` / ``clipvalue`` is set)."""
        lr = self.learning_rate
        for key, p, g in self._clipped(list(self._named(params))):
            st = self.state.get(key)
            if st is None:
                st = self.state[key] = {"step": np.zeros((), dtype=np.int64)}
            st["step"] += 1
            _match_device(st, p)
            self._update(p, g, st, lr, int(st["step"]))
        self.iterations += 1

    def _clipped(self, named: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
        """``named`` with each gradient replaced by its clipped copy (module docstring)."""
        if self.clipnorm is not None:
            return [(k, p, _scaled(g, self.clipnorm, _sumsq_device(g))) for k, p, g in named]
        if self.global_clipnorm is not None and named:
            total = sum(_sumsq_device(g) for _, _, g in named)
            return [(k, p, _scaled(g, self.global_clipnorm, total)) for k, p, g in named]
        if self.clipvalue is not None:
            v = self.clipvalue
            return [(k, p, array_module(g).clip(g, np.float32(-v), np.float32(v))
                     .astype(np.float32, copy=False)) for k, p, g in named]
        return named

    def _slot(self, st: dict[str, np.ndarray], name: str, like: np.ndarray,
              init: np.ndarray | None = None) -> np.ndarray:
        a = st.get(name)
        if a is None:
            a = st[name] = (array_module(like).zeros_like(like) if init is None
                            else init.copy())
        return a

    def _update(self, p: np.ndarray, g: np.ndarray, st: dict[str, np.ndarray], lr: float,
                t: int) -> None:
        raise NotImplementedError

    # -- config / state ---------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (a schedule as its ``{"class_name", "config"}``)."""
        lr: Any = self._lr
        if isinstance(lr, LearningRateSchedule):
            lr = {"class_name": type(lr).__name__, "config": lr.get_config()}
        elif not isinstance(lr, float):
            raise ValueError(f"cannot serialise the learning-rate callable {lr!r}; "
                             f"use a fastcnn.optimizers.LearningRateSchedule")
        cfg: dict[str, Any] = {"learning_rate": lr, "weight_decay": self.weight_decay}
        for nm in ("clipnorm", "clipvalue", "global_clipnorm"):
            if getattr(self, nm) is not None:  # only the ones set: older configs stay valid
                cfg[nm] = getattr(self, nm)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        """Optimizer from :meth:`get_config`'s dict."""
        cfg = dict(config)
        if "learning_rate" in cfg:
            cfg["learning_rate"] = _lr_from_config(cfg["learning_rate"])
        return cls(**cfg)

    def get_state(self) -> dict[str, np.ndarray]:
        """Flat copy of the state: ``"iterations"`` and ``"<slot>/<param name>"`` arrays."""
        out = {"iterations": np.array(self.iterations, dtype=np.int64)}
        for key, st in self.state.items():
            for slot, a in st.items():
                out[f"{slot}/{key}"] = host_copy(a)
        return out

    def set_state(self, flat: dict[str, np.ndarray],
                  expected: dict[str, tuple[int, ...]] | None = None) -> None:
        """Load :meth:`get_state`'s dict. With ``expected`` (param name -> shape) every array
        is checked first (ValueError naming the key; nothing is changed on error)."""
        if "iterations" not in flat:
            raise ValueError("optimizer state lacks 'iterations'")
        state: dict[str, dict[str, np.ndarray]] = {}
        for k, a in flat.items():
            if k == "iterations":
                continue
            slot, sep, key = k.partition("/")
            if not sep or not key:
                raise ValueError(f"bad optimizer state key {k!r}")
            a = to_host(a)
            if slot == "step":
                if a.shape != () or not np.issubdtype(a.dtype, np.integer):
                    raise ValueError(f"optimizer state {k!r}: expected an integer scalar, "
                                     f"got {a.dtype} {a.shape}")
                a = a.astype(np.int64)
            else:
                if expected is not None:
                    if key not in expected:
                        raise ValueError(f"optimizer state {k!r} names no trainable parameter "
                                         f"of the model")
                    if a.shape != tuple(expected[key]):
                        raise ValueError(f"optimizer state {k!r}: expected shape "
                                         f"{tuple(expected[key])}, got {a.shape}")
                if a.dtype != np.float32:
                    raise ValueError(f"optimizer state {k!r}: expected float32, got {a.dtype}")
                a = a.copy()
            state.setdefault(key, {})[slot] = a
        it = np.asarray(flat["iterations"])
        if it.shape != () or not np.issubdtype(it.dtype, np.integer):
            raise ValueError("optimizer state 'iterations' must be an integer scalar")
        self.state = state
        self.iterations = int(it)

    def __repr__(self) -> str:
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        except ValueError:
            args = "..."
        return f"{type(self).__name__}({args})"


def _clip_arg(value: Any, name: str, who: str) -> float | None:
    """A clipping bound: None (off) or a finite float > 0 (ValueError otherwise)."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{who}: {name} must be a number or None, got {value!r}") from None
    if isinstance(value, bool) or not (math.isfinite(v) and v > 0):
        raise ValueError(f"{who}: {name} must be a finite number > 0 (or None for no "
                         f"clipping), got {value!r}")
    return v


def _sumsq_device(g: Any) -> Any:
    """Sum of squares of ``g`` in float64, as a 0-d array on ``g``'s device."""
    g64 = g.astype(np.float64)
    return array_module(g).sum(g64 * g64)


def _scaled(g: Any, bound: float, sumsq: Any) -> Any:
    """``g * bound / max(sqrt(sumsq), bound)`` (Keras' clip_by_norm): ``g`` itself when
    within the bound, else a float32 copy. A non-finite norm leaves ``g`` as it is (NaN in,
    NaN out). ``sumsq`` on the GPU is a 0-d device array: the factor is computed there (1 when
    within the bound or not finite, which leaves every bit of ``g`` as it is), so clipping
    reads nothing back."""
    if is_cupy(sumsq):
        xp = array_module(sumsq)
        norm = xp.sqrt(xp.where(sumsq >= 0, sumsq, xp.nan))
        clip = xp.isfinite(norm) & (norm > bound)
        factor = xp.where(clip, bound / xp.where(clip, norm, 1.0), 1.0).astype(np.float32)
        return (g * factor).astype(np.float32, copy=False)
    sumsq = float(sumsq)
    norm = math.sqrt(sumsq) if sumsq >= 0 else math.nan
    if not math.isfinite(norm) or norm <= bound:
        return g
    return (g * np.float32(bound / norm)).astype(np.float32, copy=False)


def _match_device(st: dict[str, Any], p: Any) -> None:
    """Move the state arrays of one parameter (not its step counter) to ``p``'s device."""
    gpu = is_cupy(p)
    for slot, a in st.items():
        if slot != "step" and is_cupy(a) != gpu:
            st[slot] = move(a, "cuda" if gpu else "cpu")


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum (PyTorch's formulas)::

        g = grad + weight_decay * p
        buf = g                       (first step)   |  buf = momentum * buf + g
        g = g + momentum * buf        (nesterov)     |  g = buf   (momentum > 0)
        p -= lr * g
    """

    name = "sgd"

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.01,
                 momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, **clipping: float | None) -> None:
        super().__init__(learning_rate, weight_decay, **clipping)
        if not 0.0 <= momentum < 1.0 + 1e-12:
            raise ValueError(f"SGD: momentum must be in [0, 1], got {momentum}")
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _update(self, p, g, st, lr, t):
        # the compiled update (CPU or CUDA): the formula above in float32, operation by operation
        # in this order (bit-identical to NumPy evaluating it), in one pass and in place
        buf, first = st.get("momentum"), False
        if self.momentum and buf is None:
            buf = st["momentum"] = array_module(p).empty_like(p)
            first = True
        ops.sgd_update(p, g, buf, lr=lr, momentum=self.momentum, nesterov=self.nesterov,
                       weight_decay=self.weight_decay, first=first)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (PyTorch's formula; L2 ``weight_decay`` added to the gradient)::

        m = beta_1 m + (1 - beta_1) g;   v = beta_2 v + (1 - beta_2) g^2
        p -= lr / (1 - beta_1^t) * m / (sqrt(v) / sqrt(1 - beta_2^t) + epsilon)
    """

    name = "adam"
    _decoupled = False

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.001,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 weight_decay: float = 0.0, **clipping: float | None) -> None:
        super().__init__(learning_rate, weight_decay, **clipping)
        for nm, b in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{type(self).__name__}: {nm} must be in [0, 1), got {b}")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _update(self, p, g, st, lr, t):
        # the compiled update (CPU or CUDA): the formula in float32, operation by operation in
        # the order written above (the scalars rounded to float32 as NumPy rounds them), one pass
        ops.adam_update(p, g, self._slot(st, "m", p), self._slot(st, "v", p), lr=lr,
                        beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon, step=t,
                        weight_decay=self.weight_decay, decoupled=self._decoupled)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class AdamW(Adam):
    """Adam with decoupled weight decay (``p *= 1 - lr * weight_decay`` before the Adam
    step), PyTorch's AdamW; default ``weight_decay=0.01``."""

    name = "adamw"
    _decoupled = True

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.001,
                 weight_decay: float = 0.01, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, **clipping: float | None) -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, **clipping)


class RMSprop(Optimizer):
    """RMSprop (PyTorch's formula, Keras' defaults ``rho=0.9``, ``epsilon=1e-7``)::

        v = rho v + (1 - rho) g^2
        avg = sqrt(v - mg^2) + eps   (centered; mg = rho mg + (1 - rho) g)  |  sqrt(v) + eps
        buf = momentum buf + g / avg;  p -= lr buf     (momentum > 0)  |  p -= lr g / avg
    """

    name = "rmsprop"

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.001, rho: float = 0.9,
                 momentum: float = 0.0, epsilon: float = 1e-7, centered: bool = False,
                 weight_decay: float = 0.0, **clipping: float | None) -> None:
        super().__init__(learning_rate, weight_decay, **clipping)
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"RMSprop: rho must be in [0, 1), got {rho}")
        self.rho, self.momentum, self.epsilon = float(rho), float(momentum), float(epsilon)
        self.centered = bool(centered)

    def _update(self, p, g, st, lr, t):
        if self.weight_decay:
            g = g + np.float32(self.weight_decay) * p
        rho = np.float32(self.rho)
        xp = array_module(p)  # NumPy or CuPy: the same formulas on either device
        # new values first, then stored: in place, or on the GPU inside fit only where the
        # deferred skip flag is clear (a non-finite loss stops every later update on the
        # device, as the SGD / Adam kernels do, with no host read)
        skip = _deferred.guard(xp) if is_cupy(p) else None
        keep = None if skip is None else skip == 0

        def store(dst: Any, new: Any) -> None:
            if keep is None:
                dst[...] = new
            else:
                xp.copyto(dst, new, where=keep)

        v = self._slot(st, "v", p)
        v_new = v * rho
        v_new += (np.float32(1) - rho) * (g * g)
        if self.centered:
            mg = self._slot(st, "mg", p)
            mg_new = mg * rho
            mg_new += (np.float32(1) - rho) * g
            avg = xp.sqrt(v_new - mg_new * mg_new)
            store(mg, mg_new)
        else:
            avg = xp.sqrt(v_new)
        store(v, v_new)
        avg += np.float32(self.epsilon)
        if self.momentum > 0:
            buf = self._slot(st, "momentum", p)
            buf_new = buf * np.float32(self.momentum)
            buf_new += g / avg
            store(buf, buf_new)
            store(p, p - np.float32(lr) * buf_new)
        else:
            store(p, p - np.float32(lr) * (g / avg))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


_REGISTRY: Registry[Optimizer] = Registry(
    "optimizer", Optimizer, {c.name: c for c in (SGD, Adam, AdamW, RMSprop)},
    from_config=lambda cls, config: cls.from_config(config))


def get(identifier: Any) -> Optimizer:
    """Optimizer from a name (``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``; default
    arguments), an :class:`Optimizer`, or a ``{"class_name", "config"}`` dict."""
    return _REGISTRY.get(identifier)


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """``{"class_name", "config"}`` of a built-in optimizer (ValueError for custom ones)."""
    return _REGISTRY.serialize(optimizer)
