"""How a built fastcnn model maps onto an equivalent ``torch.nn.Sequential``, without torch.

One fastcnn layer becomes one or more torch.nn modules, in order: a Conv2D or Dense with an
activation is followed by that activation's module (``ReLU``, ``Sigmoid``, ``Softmax(dim=1)``);
a Conv2D whose "same" padding is asymmetric is preceded by ``ZeroPad2d``, a MaxPool2D whose
"same" padding can't be expressed by ``MaxPool2d`` by ``ConstantPad2d(-inf)``. The modules are
numbered from 0 in that order, so the state_dict keys of the torch model are ``"<i>.weight"`` /
``"<i>.bias"``. This is the one copy of that plan: :func:`fastcnn.torch.to_torch` builds the
modules from it and :mod:`fastcnn.saving` names ``.safetensors`` tensors by it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import layers as L
from ._geometry import conv_padding

__all__ = ["TorchModule", "layer_modules", "state_dict_names"]

_ACTIVATION_MODULES: dict[str | None, tuple[str, dict[str, Any]]] = {
    "relu": ("ReLU", {}), "sigmoid": ("Sigmoid", {}), "softmax": ("Softmax", {"dim": 1})}


@dataclass(frozen=True)
class TorchModule:
    """One module of the equivalent torch model: ``getattr(torch.nn, kind)(**kwargs)``;
    ``weights`` maps its parameter names to the fastcnn layer's (``{"weight": "kernel"}``)."""

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)


def _activation(act: str | None) -> list[TorchModule]:
    if act is None:
        return []
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
        return [*pad, conv, *_activation(layer.activation)]
    if isinstance(layer, L.Dense):
        weights = {"weight": "kernel", **({"bias": "bias"} if layer.use_bias else {})}
        return [TorchModule("Linear", {"in_features": layer.input_shape[0],
                                       "out_features": layer.units, "bias": layer.use_bias},
                            weights), *_activation(layer.activation)]
    if isinstance(layer, L.MaxPool2D):
        kw = layer._pool_kwargs()  # the resolved ops arguments (stride, padding, ceil_mode)
        pool = TorchModule("MaxPool2d", {"kernel_size": layer.pool_size, **kw})
        if layer._explicit_pad is None:
            return [pool]
        t, l, b, r = layer._explicit_pad
        return [TorchModule("ConstantPad2d", {"padding": (l, r, t, b), "value": float("-inf")}),
                pool]
    if isinstance(layer, L.Activation):  # ReLU and Softmax included
        return _activation(layer.activation) or [TorchModule("Identity")]
    if isinstance(layer, L.Flatten):
        return [TorchModule("Flatten")]
    if isinstance(layer, L.Dropout):
        return [TorchModule("Dropout", {"p": layer.rate})]
    raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no torch.nn "
                     f"equivalent")


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
