"""How a built fastcnn model maps onto an equivalent ``torch.nn.Sequential``, without torch.

One fastcnn layer becomes one or more torch.nn modules, in order: a Conv2D or Dense with an
activation is followed by that activation's module (``ReLU``, ``Sigmoid``, ``Tanh``,
``Softmax(dim=1)``, ``LeakyReLU(slope)``, ``GELU``, ``SiLU``); a Conv2D whose "same" padding is
asymmetric is preceded by ``ZeroPad2d``, a MaxPool2D whose "same" padding can't be expressed by
``MaxPool2d`` by ``ConstantPad2d(-inf)``. BatchNormalization -> ``BatchNorm1d`` / ``BatchNorm2d``
(``momentum = 1 - keras momentum``, ``eps``), AveragePooling2D -> ``AvgPool2d``
(``count_include_pad=False``: Keras' "same" averages the real elements only),
GlobalAveragePooling2D / GlobalMaxPooling2D -> ``AdaptiveAvgPool2d(1)`` /
``AdaptiveMaxPool2d(1)`` (+ ``Flatten`` unless ``keepdims``), ZeroPadding2D -> ``ZeroPad2d``,
Reshape -> ``Unflatten(1, shape)`` (after a ``Flatten`` when the input is not flat).

The modules are numbered from 0 in that order, so the state_dict keys of the torch model are
``"<i>.weight"`` / ``"<i>.bias"``, and ``"<i>.running_mean"`` / ``"<i>.running_var"`` for a
BatchNormalization's moving statistics (torch's ``num_batches_tracked`` counter has no fastcnn
twin: it is not in the plan). This is the one copy of that plan: :func:`fastcnn.torch.to_torch`
builds the modules from it and :mod:`fastcnn.saving` names ``.safetensors`` tensors by it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import layers as L
from ._geometry import conv_padding

__all__ = ["TorchModule", "layer_modules", "state_dict_names"]

_ACTIVATION_MODULES: dict[str | None, tuple[str, dict[str, Any]]] = {
    "relu": ("ReLU", {}), "sigmoid": ("Sigmoid", {}), "softmax": ("Softmax", {"dim": 1}),
    "tanh": ("Tanh", {}), "gelu": ("GELU", {}), "silu": ("SiLU", {})}


@dataclass(frozen=True)
class TorchModule:
    """One module of the equivalent torch model: ``getattr(torch.nn, kind)(**kwargs)``;
    ``weights`` maps its parameter names to the fastcnn layer's (``{"weight": "kernel"}``)."""

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)


def _activation(act: str | None, layer: L.Layer) -> list[TorchModule]:
    if act is None:
        return []
    if act == "leaky_relu":
        return [TorchModule("LeakyReLU", {"negative_slope": layer.negative_slope})]  # type: ignore[attr-defined]
    if act == "gelu" and getattr(layer, "approximate", False):  # the tanh form
        return [TorchModule("GELU", {"approximate": "tanh"})]
    kind, kw = _ACTIVATION_MODULES[act]
    return [TorchModule(kind, kw)]


def layer_modules(layer: L.Layer) -> list[TorchModule]:
    """The torch.nn modules equivalent to one built fastcnn layer, in order.

    Raises:
        ValueError: a layer type without a torch.nn equivalent, or an unbuilt layer.
    """
    if layer.input_shape is None:
        raise ValueError(f"layer {layer.name!r} is not built (build the model first)")
    if isinstance(layer, L.Conv2D):
        C, H, W = layer.input_shape
        R, S = layer.kernel_size
        t, l, b, r = conv_padding(layer.padding if isinstance(layer.padding, str)
                                  else tuple(layer.padding), H, W, R, S, layer.strides,
                                  layer.dilation_rate)
        pad: list[TorchModule] = []
        if (t, l) != (b, r):
            pad, t, l = [TorchModule("ZeroPad2d", {"padding": (l, r, t, b)})], 0, 0
        weights = {"weight": "kernel", **({"bias": "bias"} if layer.use_bias else {})}
        conv = TorchModule("Conv2d", {
            "in_channels": C, "out_channels": layer.filters, "kernel_size": layer.kernel_size,
            "stride": layer.strides, "padding": (t, l), "dilation": layer.dilation_rate,
            "groups": layer.groups, "bias": layer.use_bias}, weights)
        return [*pad, conv, *_activation(layer.activation, layer)]
    if isinstance(layer, L.Dense):
        weights = {"weight": "kernel", **({"bias": "bias"} if layer.use_bias else {})}
        return [TorchModule("Linear", {"in_features": layer.input_shape[0],
                                       "out_features": layer.units, "bias": layer.use_bias},
                            weights), *_activation(layer.activation, layer)]
    if isinstance(layer, L.MaxPool2D):
        kw = layer._pool_kwargs()  # resolved ops arguments: stride, padding, dilation, ceil_mode
        pool = TorchModule("MaxPool2d", {"kernel_size": layer.pool_size, **kw})
        if layer._explicit_pad is None:
            return [pool]
        t, l, b, r = layer._explicit_pad
        return [TorchModule("ConstantPad2d", {"padding": (l, r, t, b), "value": float("-inf")}),
                pool]
    if isinstance(layer, L.Activation):  # ReLU, Softmax and LeakyReLU included
        return _activation(layer.activation, layer) or [TorchModule("Identity")]
    if isinstance(layer, L.Flatten):
        return [TorchModule("Flatten")]
    if isinstance(layer, L.Dropout):
        return [TorchModule("Dropout", {"p": layer.rate})]
    more = _new_layer_modules(layer)
    if more is not None:
        return more
    raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no torch.nn "
                     f"equivalent")


def _new_layer_modules(layer: L.Layer) -> list[TorchModule] | None:
    """:func:`layer_modules` for BatchNormalization, the average and global poolings,
    ZeroPadding2D and Reshape (None for another type)."""
    shape = layer.input_shape
    assert shape is not None
    if isinstance(layer, L.BatchNormalization):
        weights = {**({"weight": "gamma"} if layer.scale else {}),
                   **({"bias": "beta"} if layer.center else {}),
                   "running_mean": "moving_mean", "running_var": "moving_variance"}
        # torch's affine has both weight and bias: the one fastcnn lacks keeps torch's 1 / 0
        return [TorchModule("BatchNorm2d" if len(shape) == 3 else "BatchNorm1d", {
            "num_features": shape[0], "eps": layer.epsilon, "momentum": layer.torch_momentum,
            "affine": layer.scale or layer.center}, weights)]
    if isinstance(layer, L.AveragePooling2D):
        if layer._explicit_pad is not None:
            raise ValueError(f"layer {layer.name!r} (AveragePooling2D, 'same' padding "
                             f"{layer._explicit_pad} (top, left, bottom, right) for inputs "
                             f"{shape}) has no torch.nn equivalent: AvgPool2d pads "
                             f"symmetrically; use an odd pool_size or a stride >= 2")
        return [TorchModule("AvgPool2d", {"kernel_size": layer.pool_size,
                                          **layer._pool_kwargs()})]
    if isinstance(layer, L.GlobalAveragePooling2D | L.GlobalMaxPooling2D):
        kind = "AdaptiveAvgPool2d" if isinstance(layer, L.GlobalAveragePooling2D) \
            else "AdaptiveMaxPool2d"
        return [TorchModule(kind, {"output_size": 1}),
                *([] if layer.keepdims else [TorchModule("Flatten")])]
    if isinstance(layer, L.ZeroPadding2D):
        t, l, b, r = layer.pads
        return [TorchModule("ZeroPad2d", {"padding": (l, r, t, b)})]
    if isinstance(layer, L.Reshape):
        out = tuple(layer.output_shape)  # type: ignore[arg-type]
        flat = [] if len(shape) == 1 else [TorchModule("Flatten")]
        if len(out) == 1:
            return flat or [TorchModule("Identity")]
        return [*flat, TorchModule("Unflatten", {"dim": 1, "unflattened_size": out})]
    return None


def state_dict_names(layers: Iterable[L.Layer]) -> dict[str, str]:
    """``{torch state_dict key: "<layer>/<param>"}`` for every weight of ``layers`` (built),
    keys in the torch model's order (``"0.weight"``, ``"0.bias"``, ...)."""
    names: dict[str, str] = {}
    i = 0
    for layer in layers:
        for module in layer_modules(layer):
            for tname, fname in module.weights.items():
                names[f"{i}.{tname}"] = f"{layer.name}/{fname}"
            i += 1
    return names
