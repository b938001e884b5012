"""Conversion between ``torch.nn.Sequential`` and ``fastcnn.Sequential``, weights copied.

:func:`to_torch` builds the torch model that :mod:`fastcnn._torch_layout` plans (the same plan
names the tensors of a ``.safetensors`` weights file, so ``model.save_weights("w.safetensors")``
loads into it with ``load_state_dict``). :func:`from_torch` maps each torch module onto a
fastcnn layer, fusing a ``ReLU`` that follows a ``Conv2d`` or ``Linear`` into that layer (its
activation: fastcnn then applies it in the GEMM epilogue); converting back gives the same
modules again, so the state_dict keys are the original model's.

Supported torch modules: ``Conv2d`` (``padding_mode="zeros"``), ``Linear``, ``MaxPool2d``
(dilation as ``dilation_rate``; no return_indices; padding / ceil_mode only where they equal
Keras' "valid" or "same" for the input size), ``AvgPool2d`` (the same, "same" with
``count_include_pad=False``; no ``divisor_override``), ``BatchNorm1d`` / ``BatchNorm2d``
(``track_running_stats``, a float momentum: Keras' momentum is ``1 - momentum``),
``AdaptiveAvgPool2d(1)`` /
``AdaptiveMaxPool2d(1)`` (a ``Flatten()`` after it is merged: ``keepdims=False``), ``ReLU``,
``Sigmoid``, ``Tanh``, ``LeakyReLU``, ``GELU`` (both forms), ``SiLU``, ``Softmax``
over the channel / feature axis, ``Flatten()``, ``Unflatten``, ``ZeroPad2d`` (merged into the
next ``Conv2d`` when it completes its "same" padding, else a ZeroPadding2D), ``Dropout``,
``Identity``, nested ``Sequential``s, and the ``ConstantPad2d(-inf)`` that :func:`to_torch` writes
before a MaxPool2D with asymmetric "same" padding. Anything else is a ValueError naming the
module. Weights must be float32 (``module.float()``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .. import layers as L
from .._arrays import host_copy
from .._flat import is_model
from .._geometry import conv_padding, pair, pool_output_size
from .._torch_layout import layer_modules
from ..saving import _model_class

if TYPE_CHECKING:
    from ..model import Sequential

__all__ = ["from_torch", "to_torch"]


def to_torch(model: Sequential) -> nn.Sequential:
    """An equivalent ``torch.nn.Sequential`` of torch.nn modules on the CPU, in training mode,
    holding copies of ``model``'s weights (frozen layers' with ``requires_grad=False``).

    Shapes: the same input ``(N, *model.input_shape)`` and output as ``model(x)``. Run it on
    fastcnn's kernels with :func:`fastcnn.torch.accelerate`. A nested model (a Sequential or
    graph Model used as a layer) becomes one submodule: its own ``to_torch()`` (an
    ``nn.Sequential``, which :func:`from_torch` reads back flattened, or a
    :class:`fastcnn.torch.graph.GraphModule`).
    """
    model._require_built()
    mods: list[nn.Module] = []
    for layer in model.layers:
        if is_model(layer):
            mods.append(layer.to_torch())
        else:
            mods += layer_to_torch(layer)
    return nn.Sequential(*mods)


def layer_to_torch(layer: L.Layer) -> list[nn.Module]:
    """The torch.nn modules of one built fastcnn layer (:func:`fastcnn._torch_layout.layer_modules`'
    plan), holding copies of its weights (a frozen layer's with ``requires_grad=False``)."""
    modules: list[nn.Module] = []
    for spec in layer_modules(layer):
        module = getattr(nn, spec.kind)(**spec.kwargs)
        with torch.no_grad():
            for tname, fname in spec.weights.items():
                param = getattr(module, tname)
                param.copy_(torch.from_numpy(host_copy(layer.params[fname])))
                if isinstance(param, nn.Parameter):  # not the buffers (running stats)
                    param.requires_grad_(layer.trainable)
        modules.append(module)
    return modules


# --------------------------------------------------------------------------------------------
# from_torch


def _flat(module: nn.Module) -> list[nn.Module]:
    if type(module) is nn.Sequential:
        return [m for child in module for m in _flat(child)]
    return [module]


def _weights(module: nn.Module, names: dict[str, str], where: str) -> dict[str, np.ndarray]:
    out = {}
    for tname, fname in names.items():
        p = getattr(module, tname)
        if p.dtype != torch.float32:
            raise TypeError(f"from_torch: {where}.{tname} is {p.dtype}; fastcnn holds float32 "
                            f"weights (call module.float() first)")
        out[fname] = p.detach().cpu().numpy()
    return out


_NO_INDICES = ("return_indices=True: a fastcnn model passes one array from layer to layer and "
               "can't carry the indices; build it with return_indices=False (the indices "
               "come from fastcnn.torch.max_pool2d(x, ..., return_indices=True))")


def _err(where: str, module: nn.Module, what: str) -> ValueError:
    return ValueError(f"from_torch: module {where} ({module!r}) is not supported: {what}")


def _conv(m: nn.Conv2d, shape: tuple[int, ...], pad: tuple[int, ...] | None, where: str,
          activation: str | None) -> L.Conv2D:
    if m.padding_mode != "zeros":
        raise _err(where, m, f"padding_mode={m.padding_mode!r} (fastcnn pads with zeros)")
    if len(shape) != 3 or shape[0] != m.in_channels:
        raise _err(where, m, f"it takes {m.in_channels} channels, the input per sample is "
                             f"{shape}")
    R, S = m.kernel_size
    padding: Any = m.padding if isinstance(m.padding, str) else pair(m.padding, "padding")
    if pad is not None:  # ZeroPad2d (left, right, top, bottom) before a padding=0 conv
        same = conv_padding("same", shape[1] - pad[2] - pad[3], shape[2] - pad[0] - pad[1],
                            R, S, m.stride, m.dilation)
        if padding not in ("valid", (0, 0)) or (pad[2], pad[0], pad[3], pad[1]) != same:
            raise _err(where, m, f"the ZeroPad2d{pad} before it is not the 'same' padding "
                                 f"{same} (top, left, bottom, right) for this input")
        padding = "same"
    return L.Conv2D(m.out_channels, (R, S), strides=m.stride, padding=padding,
                    dilation_rate=m.dilation, groups=m.groups, activation=activation,
                    use_bias=m.bias is not None)


def _pool(m: nn.MaxPool2d, shape: tuple[int, ...], pad: tuple[int, ...] | None,
          where: str) -> L.MaxPool2D:
    if m.return_indices:
        raise _err(where, m, _NO_INDICES)
    dilation = pair(m.dilation, "dilation")
    k = pair(m.kernel_size, "kernel_size")
    s = k if m.stride is None else pair(m.stride, "stride")
    want = ({"stride": s, "padding": pair(m.padding, "padding"), "dilation": dilation,
             "ceil_mode": bool(m.ceil_mode)},
            None if pad is None else (pad[2], pad[0], pad[3], pad[1]))
    inner = shape if pad is None else (shape[0], shape[1] - pad[2] - pad[3],
                                       shape[2] - pad[0] - pad[1])
    for padding in ("valid", "same"):
        layer = L.MaxPool2D(k, s, padding, dilation_rate=dilation)
        layer.build(inner, np.random.default_rng(0))
        if want == (layer._pool_kwargs(), layer._explicit_pad):
            return L.MaxPool2D(k, s, padding, dilation_rate=dilation)
        if padding == "valid" and pad is None and want[0]["padding"] == (0, 0) and \
                pool_output_size(shape[1], shape[2], k, s, 0, dilation,
                                 True) == layer.output_shape[1:]:
            return L.MaxPool2D(k, s, padding, dilation_rate=dilation)  # ceil adds no window
    raise _err(where, m, "its padding / ceil_mode are neither Keras' 'valid' nor 'same' for "
                         f"inputs {inner}")


def _completes_same(conv: nn.Conv2d, shape: tuple[int, ...], padding: Any) -> bool:
    """Whether a ZeroPad2d ``padding`` (left, right, top, bottom) before ``conv`` (padding 0)
    is that conv's Keras "same" padding for the unpadded per-sample ``shape``."""
    if len(shape) != 3 or conv.padding not in ("valid", 0, (0, 0)):
        return False
    left, right, top, bottom = (int(p) for p in padding)
    R, S = conv.kernel_size
    return conv_padding("same", shape[1], shape[2], R, S, conv.stride, conv.dilation) == (
        top, left, bottom, right)


def _zero_padding(m: nn.Module, where: str) -> L.ZeroPadding2D:
    left, right, top, bottom = (int(p) for p in m.padding)
    if min(left, right, top, bottom) < 0:
        raise _err(where, m, "a negative padding (cropping)")
    return L.ZeroPadding2D(((top, bottom), (left, right)))


def _avg_pool(m: nn.AvgPool2d, shape: tuple[int, ...], where: str) -> L.AveragePooling2D:
    if m.divisor_override is not None:
        raise _err(where, m, "divisor_override")
    if len(shape) != 3:
        raise _err(where, m, f"the input per sample is {shape}, not (C, H, W)")
    k = pair(m.kernel_size, "kernel_size")
    s = k if m.stride is None else pair(m.stride, "stride")
    pad, ceil = pair(m.padding, "padding"), bool(m.ceil_mode)
    for padding in ("valid", "same"):
        layer = L.AveragePooling2D(k, s, padding)
        layer.build(shape, np.random.default_rng(0))
        if layer._explicit_pad is not None:
            continue
        kw = layer._pool_kwargs()
        if (kw["padding"], kw["ceil_mode"]) == (pad, ceil) and (
                padding == "valid" or pad == (0, 0) or not m.count_include_pad):
            return L.AveragePooling2D(k, s, padding)
        if padding == "valid" and pad == (0, 0) and \
                pool_output_size(shape[1], shape[2], k, s, 0, 1, True) == layer.output_shape[1:]:
            return L.AveragePooling2D(k, s, padding)  # ceil_mode that adds no window
    raise _err(where, m, "its padding / ceil_mode / count_include_pad are neither Keras' "
                         f"'valid' nor 'same' (count_include_pad=False) for inputs {shape}")


def _batch_norm(m: nn.Module, shape: tuple[int, ...], where: str) -> tuple[
        L.BatchNormalization, dict[str, np.ndarray]]:
    if not m.track_running_stats or m.running_mean is None:
        raise _err(where, m, "track_running_stats=False (fastcnn keeps moving statistics)")
    if m.momentum is None:
        raise _err(where, m, "momentum=None (a cumulative average; fastcnn's is exponential)")
    want = 3 if isinstance(m, nn.BatchNorm2d) else None
    if shape[0] != m.num_features or (want is not None and len(shape) != want) or \
            (want is None and len(shape) not in (1, 2)):
        raise _err(where, m, f"it normalises {m.num_features} channels of "
                             f"{'(N, C, H, W)' if want else '(N, C) or (N, C, L)'} inputs, "
                             f"the input per sample is {shape}")
    layer = L.BatchNormalization(momentum=round(1.0 - float(m.momentum), 12),
                                 epsilon=float(m.eps), center=m.affine, scale=m.affine)
    names = {"running_mean": "moving_mean", "running_var": "moving_variance"}
    if m.affine:
        names = {"weight": "gamma", "bias": "beta", **names}
    w = _weights(m, names, where)
    return layer, w


def _new_module(m: nn.Module, nxt: nn.Module | None, shape: tuple[int, ...],
                where: str) -> tuple[L.Layer, dict[str, np.ndarray], int]:
    """The fastcnn layer for one of the newer modules, its weights and how many of the
    following modules it absorbed (a Flatten after a global pooling)."""
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        return (*_batch_norm(m, shape, where), 0)
    if isinstance(m, nn.AvgPool2d):
        return _avg_pool(m, shape, where), {}, 0
    if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        if pair(m.output_size, "output_size") != (1, 1):
            raise _err(where, m, "only output_size=1 (a global pooling)")
        flat = isinstance(nxt, nn.Flatten) and (nxt.start_dim, nxt.end_dim) == (1, -1)
        cls = L.GlobalAveragePooling2D if isinstance(m, nn.AdaptiveAvgPool2d) \
            else L.GlobalMaxPooling2D
        if isinstance(m, nn.AdaptiveMaxPool2d) and m.return_indices:
            raise _err(where, m, _NO_INDICES)
        return cls(keepdims=not flat), {}, int(flat)
    if isinstance(m, nn.Tanh):
        return L.Activation("tanh"), {}, 0
    if isinstance(m, nn.LeakyReLU):
        if m.negative_slope < 0:
            raise _err(where, m, "a negative slope (Keras' LeakyReLU takes >= 0)")
        return L.LeakyReLU(m.negative_slope), {}, 0
    if isinstance(m, nn.GELU):  # approximate is "none" (erf) or "tanh" (torch checks it)
        return L.Activation("gelu", approximate=m.approximate == "tanh"), {}, 0
    if isinstance(m, nn.SiLU):
        return L.Activation("silu"), {}, 0
    if isinstance(m, nn.Unflatten):
        rank = len(shape) + 1
        dim = m.dim + rank if m.dim < 0 else m.dim
        if not 1 <= dim < rank:
            raise _err(where, m, f"dim={m.dim}: only the per-sample axes can be unflattened")
        return L.Reshape((*shape[:dim - 1], *m.unflattened_size, *shape[dim:])), {}, 0
    raise _err(where, m, "no fastcnn layer for this module type")


def from_torch(module: nn.Module, input_shape: tuple[int, ...] | None = None, *,
               name: str = "sequential") -> Sequential:
    """A built ``fastcnn.Sequential`` equivalent to a ``torch.nn.Sequential``, weights copied.

    Args:
        module: an ``nn.Sequential`` of the modules listed in this module's docstring
            (torch.nn's or fastcnn.torch's).
        input_shape: the per-sample input shape ``(C, H, W)`` (or ``(features,)``); needed
            unless the first module is a ``Linear`` (then ``(in_features,)``).
        name: the fastcnn model's name.

    Returns:
        the model: ``model(x)`` equals ``module(x)`` within float32 rounding (in eval mode:
        fastcnn's Dropout masks differ from torch's).

    Raises:
        ValueError: an unsupported module or argument (named), or shapes that don't chain.
        TypeError: not an ``nn.Sequential``, or non-float32 weights.
    """
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"from_torch: expected a torch.nn.Sequential, got "
                        f"{type(module).__name__}")
    mods = _flat(module)
    if input_shape is None:
        if mods and isinstance(mods[0], nn.Linear):
            input_shape = (mods[0].in_features,)
        else:
            raise ValueError("from_torch: pass input_shape=(C, H, W), the per-sample input "
                             "shape (it sizes the convolutions' padding and the Dense layers)")
    shape = tuple(int(s) for s in input_shape)
    layers: list[L.Layer] = []
    weights: list[dict[str, np.ndarray]] = []
    pad: tuple[int, ...] | None = None
    rng = np.random.default_rng(0)
    i = 0
    while i < len(mods):
        m, where = mods[i], f"[{i}]"
        i += 1
        w: dict[str, np.ndarray] = {}
        if isinstance(m, nn.ZeroPad2d | nn.ConstantPad2d):
            value = float(getattr(m, "value", 0.0))
            nxt = mods[i] if i < len(mods) else None
            ok = (isinstance(nxt, nn.Conv2d) and value == 0.0
                  and _completes_same(nxt, shape, m.padding)) or (
                isinstance(nxt, nn.MaxPool2d) and value == -math.inf)
            if pad is None and not ok and value == 0.0 and len(shape) == 3:
                layer, pad = _zero_padding(m, where), None
                shape = layer.build(shape, rng)
                layers.append(layer)
                weights.append({})
                continue
            if pad is not None or not ok or len(shape) != 3:
                raise _err(where, m, "a pad is supported only right before a Conv2d (zeros) "
                                     "or MaxPool2d (-inf) whose 'same' padding it completes")
            pad = tuple(int(p) for p in m.padding)
            shape = (shape[0], shape[1] + pad[2] + pad[3], shape[2] + pad[0] + pad[1])
            continue
        if isinstance(m, nn.Conv2d | nn.Linear):
            act = None
            if i < len(mods) and isinstance(mods[i], nn.ReLU):
                act = "relu"  # fused; to_torch writes the ReLU back
                i += 1
            if isinstance(m, nn.Conv2d):
                layer: L.Layer = _conv(m, shape, pad, where, act)
                if pad is not None:
                    shape = (shape[0], shape[1] - pad[2] - pad[3], shape[2] - pad[0] - pad[1])
            else:
                if shape != (m.in_features,):
                    raise _err(where, m, f"it takes ({m.in_features},) features, the input "
                                         f"per sample is {shape} (a Flatten missing?)")
                layer = L.Dense(m.out_features, activation=act, use_bias=m.bias is not None)
            w = _weights(m, {"weight": "kernel", **({"bias": "bias"} if m.bias is not None
                                                    else {})}, where)
        elif isinstance(m, nn.MaxPool2d):
            layer = _pool(m, shape, pad, where)
            if pad is not None:
                shape = (shape[0], shape[1] - pad[2] - pad[3], shape[2] - pad[0] - pad[1])
        elif isinstance(m, nn.ReLU):
            layer = L.ReLU()
        elif isinstance(m, nn.Sigmoid):
            layer = L.Activation("sigmoid")
        elif isinstance(m, nn.Softmax):
            if m.dim not in (1, -len(shape) - 1) and not (len(shape) == 1 and m.dim == -1):
                raise _err(where, m, f"softmax over dim={m.dim}; fastcnn's is over axis 1 "
                                     f"(channels / features)")
            layer = L.Softmax()
        elif isinstance(m, nn.Flatten):
            if (m.start_dim, m.end_dim) != (1, -1):
                raise _err(where, m, "only Flatten(start_dim=1, end_dim=-1)")
            layer = L.Flatten()
        elif isinstance(m, nn.Dropout):
            layer = L.Dropout(m.p)
        elif isinstance(m, nn.Identity):
            layer = L.Activation(None)
        else:
            new = _new_module(m, mods[i] if i < len(mods) else None, shape, where)
            layer, w, merged = new
            i += merged
        pad = None
        layer.trainable = all(p.requires_grad for p in m.parameters()) if w else True
        shape = layer.build(shape, rng)
        layers.append(layer)
        weights.append(w)
    if pad is not None:
        raise ValueError("from_torch: the model ends with a pad")
    model = _model_class({"class_name": "Sequential"})(layers, input_shape=tuple(input_shape),
                                                        name=name)
    for layer, w in zip(model.layers, weights, strict=True):
        for fname, a in w.items():
            if layer.params[fname].shape != a.shape:  # pragma: no cover - checked above
                raise ValueError(f"from_torch: {layer.name}/{fname} has shape {a.shape}, "
                                 f"expected {layer.params[fname].shape}")
            layer.params[fname][...] = a
    return model
