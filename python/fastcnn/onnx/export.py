"""ONNX export: :func:`to_onnx` builds an ``onnx.ModelProto`` from a built
:class:`fastcnn.Sequential` or graph :class:`fastcnn.Model` with ``onnx.helper`` (no PyTorch
involved), :func:`export` writes it to a file, and :class:`Exportable` gives the model its
``export`` method (Keras 3's name).

One graph node (or none) per layer call, in the model's node order (a graph's DAG becomes the
same DAG of ONNX nodes; a shared layer's later calls are nodes ``<layer>/call<k>`` reading the
same initializers), standard ONNX ops only:

=====================  ===============================================================
fastcnn layer          ONNX
=====================  ===============================================================
Conv2D                 ``Conv`` (kernel ``(K, C/groups, R, S)``, the same layout;
                       ``pads`` resolved to ``[top, left, bottom, right]``, ONNX's order;
                       ``strides``, ``dilations``, ``group``; the bias as third input)
Dense                  ``Gemm`` with ``transB=1`` (kernel ``(units, in)``)
MaxPool2D              ``MaxPool`` (``"same"`` as explicit pads, which ONNX pads with
                       -inf, as fastcnn does; ``dilations`` when ``dilation_rate`` > 1; a
                       dilated "same" pad as large as the window as a ``Pad`` of -inf first,
                       which load_onnx merges back into the MaxPool2D)
AveragePooling2D       ``AveragePool`` (``"same"`` as explicit pads with
                       ``count_include_pad=0``: the padding is not averaged, as in Keras)
GlobalAveragePooling2D ``GlobalAveragePool`` (+ ``Flatten`` unless ``keepdims``)
GlobalMaxPooling2D     ``GlobalMaxPool`` (+ ``Flatten`` unless ``keepdims``)
BatchNormalization     folded into the Conv / Gemm before it (``fold_batch_norm=True``, the
                       default, see below); else ``BatchNormalization`` (inference form:
                       ``epsilon``, ``momentum`` = Keras', the same convention; a missing
                       gamma / beta written as ones / zeros)
Flatten                ``Flatten`` (``axis=1``)
Reshape                ``Reshape`` to ``[0, *output_shape]`` (0: the batch dimension kept)
ZeroPadding2D          ``Pad`` (constant zeros, pads ``[0, 0, top, left, 0, 0, bottom, right]``)
Dropout                nothing (identity at inference)
activation             ``Relu`` / ``Sigmoid`` / ``Tanh`` / ``Softmax`` (``axis=1``) /
                       ``LeakyRelu`` (``alpha``) / ``Gelu`` (opset >= 20; below it, PyTorch's
                       decomposition ``Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5``) /
                       SiLU as ``Sigmoid -> Mul x``, after the layer, for Conv2D / Dense's
                       activation and the activation layers
InputLayer             nothing (the graph input)
Add                    ``Add`` (two inputs) or ``Sum`` (more)
Concatenate            ``Concat`` (``axis`` made non-negative: 1 for NCHW channels)
=====================  ===============================================================

BatchNormalization folding: by default the graph is what ``predict`` runs: a
BatchNormalization right after a Conv2D / Dense without an activation is folded into that
layer's kernel and bias (:func:`fastcnn.layers.inference_layers`), so the file has one Conv /
Gemm where the model has two layers (a runtime that does not fuse them itself runs one pass
less; ``onnxruntime`` would fuse them anyway). ``fold_batch_norm=False`` writes every
BatchNormalization as its own node instead, keeping the model's structure (the moving
statistics readable in the file; :func:`fastcnn.onnx.load_onnx` reads either form back).

The graph input is ``"input"`` of shape ``("N", *model.input_shape)`` (a dynamic batch
dimension), float32; the output is ``"output"`` of shape ``("N", *model.output_shape)``.
A model with several inputs or outputs has one graph input per model input, named as
``model.input_names``, and one graph output per model output, named as
``model.output_names``, in the model's order (float32, ``N`` dynamic); its names and whether it
takes / returns dicts go into ``metadata_props`` under ``"fastcnn.structure"``, so
:func:`fastcnn.onnx.load_onnx` rebuilds the same structure. Nested models (a Sequential or
graph Model used as a layer) are inlined (:mod:`fastcnn._flat`): their layers' nodes and
weights are named ``<model>/<layer>`` (``<outer>/<inner>/<layer>`` deeper), written once
however often the nested model is called.
Weights are initializers named ``<layer>/kernel`` and ``<layer>/bias``; ``model.metadata``
(class names, preprocessing) goes, as JSON, into the model's ``metadata_props`` under
``"fastcnn.metadata"`` (:func:`fastcnn.onnx.load_onnx` reads it back). The model is checked
with ``onnx.checker.check_model(full_check=True)`` before it is returned.

External data: weights over protobuf's 2 GB limit for one message (or any size, with
``export(..., external_data=True)``) are written to ``<file>.data`` beside the ``.onnx`` in
ONNX's external-data format (:mod:`fastcnn.onnx._external`); ``onnx.load`` / onnxruntime /
:func:`fastcnn.onnx.load_onnx` read them from the model file's directory.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _native
from .. import layers as _layers
from .._arrays import host_copy
from .._flat import FlatGraph, flatten
from .._geometry import conv_padding, same_padding
from ..saving import atomic_write
from ._common import DEFAULT_OPSET, MIN_OPSET, require_onnx
from ._external import (
    data_file_name,
    initializer_bytes,
    needs_external_data,
    write_with_external_data,
)

if TYPE_CHECKING:  # the model is known here only by the attributes read from it
    from ..model import Model as Sequential  # either kind of model

__all__ = ["METADATA_KEY", "STRUCTURE_KEY", "SUPPORTED_FORMATS", "Exportable", "export", "to_onnx"]

#: The ``format`` values :meth:`Sequential.export` accepts.
SUPPORTED_FORMATS = ("onnx",)

#: The ``metadata_props`` key holding ``model.metadata`` as JSON.
METADATA_KEY = "fastcnn.metadata"
#: The ``metadata_props`` key holding, for a model with several inputs or outputs, its input
#: and output names and whether it takes / returns dicts (JSON).
STRUCTURE_KEY = "fastcnn.structure"

_ACTIVATION_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "softmax": "Softmax", "tanh": "Tanh",
                   "leaky_relu": "LeakyRelu"}
#: The first opset with a ``Gelu`` op (below it GELU is written as its decomposition).
GELU_OPSET = 20


class _Graph:
    """The nodes and initializers being written; ``current`` is the tensor the next node
    takes (a layer's input, set by :func:`to_onnx` for each layer call)."""

    def __init__(self, onnx: Any, opset: int = DEFAULT_OPSET) -> None:
        self.onnx = onnx
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.current = "input"
        self._weights: set[str] = set()

    def weight(self, name: str, a: Any) -> str:
        if name not in self._weights:  # a shared layer's weights are written once
            arr = np.ascontiguousarray(host_copy(a), dtype=np.float32)
            self.const(name, arr)
        return name

    def const(self, name: str, arr: np.ndarray) -> str:
        """An initializer of ``arr``'s dtype (int64 shapes and pads, float32 scalars)."""
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(arr), name=name))
        self._weights.add(name)
        return name

    def op(self, op: str, name: str, inputs: list[str], **attrs: Any) -> str:
        """A node with explicit ``inputs`` (not chained); returns its output's name."""
        out = f"{name}/output"
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def node(self, op: str, name: str, extra_inputs: list[str] | None = None,
             inputs: list[str] | None = None, **attrs: Any) -> None:
        out = f"{name}/output"
        self.nodes.append(self.onnx.helper.make_node(
            op, [*(inputs if inputs is not None else [self.current]), *(extra_inputs or [])],
            [out], name=name, **attrs))
        self.current = out

    def activation(self, act: str | None, layer: str, negative_slope: float = 0.2,
                   approximate: bool = False) -> None:
        if act is None:
            return
        name, x = f"{layer}/{act}", self.current
        if act == "gelu" and approximate and self.opset >= GELU_OPSET:  # the tanh form
            self.node("Gelu", name, approximate="tanh")
        elif act == "gelu" and approximate:  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            c = [self.const(f"{name}/{k}", np.array(v, np.float32)) for k, v in (
                ("k", 0.044715), ("s", np.sqrt(2.0 / np.pi)), ("one", 1.0), ("half", 0.5))]
            t = self.op("Mul", f"{name}/x2", [x, x])
            t = self.op("Mul", f"{name}/x3", [t, x])
            t = self.op("Mul", f"{name}/kx3", [t, c[0]])
            t = self.op("Add", f"{name}/inner", [x, t])
            t = self.op("Mul", f"{name}/scaled", [t, c[1]])
            t = self.op("Tanh", f"{name}/tanh", [t])
            t = self.op("Add", f"{name}/add", [t, c[2]])
            t = self.op("Mul", f"{name}/mul", [x, t])
            self.current = self.op("Mul", name, [t, c[3]])
        elif act == "silu":  # x * sigmoid(x), as PyTorch exports it
            s = self.op("Sigmoid", f"{name}/sigmoid", [x])
            self.current = self.op("Mul", name, [x, s])
        elif act == "gelu" and self.opset < GELU_OPSET:  # PyTorch's decomposition
            f32 = np.float32
            c = [self.const(f"{name}/{k}", np.array(v, f32))
                 for k, v in (("sqrt2", np.sqrt(2.0)), ("one", 1.0), ("half", 0.5))]
            t = self.op("Div", f"{name}/div", [x, c[0]])
            t = self.op("Erf", f"{name}/erf", [t])
            t = self.op("Add", f"{name}/add", [t, c[1]])
            t = self.op("Mul", f"{name}/mul", [x, t])
            self.current = self.op("Mul", name, [t, c[2]])
        elif act == "gelu":
            self.node("Gelu", name)
        else:
            attrs: dict[str, Any] = {"axis": 1} if act == "softmax" else {}
            if act == "leaky_relu":
                attrs["alpha"] = float(negative_slope)
            self.node(_ACTIVATION_OPS[act], name, **attrs)


def _add_layer(g: _Graph, layer: _layers.Layer, inputs: list[str] | None = None,
               call: str | None = None, weights: str | None = None) -> None:
    """Append ``layer``'s node(s) to ``g`` (its input shape is ``layer.input_shape``), taking
    ``g.current`` (or, for a merge layer, the tensors ``inputs``); ``call`` names this call's
    nodes (a shared layer's later calls, a nested model's layers), ``weights`` the prefix of
    its initializers (default: the layer's name)."""
    name = weights or str(layer.name)
    node = call or name
    if isinstance(layer, _layers.Conv2D):
        _c, H, W = layer.input_shape  # type: ignore[misc]
        R, S = layer.kernel_size
        top, left, bottom, right = conv_padding(layer.padding, H, W, R, S, layer.strides,
                                                layer.dilation_rate, op=layer._label())
        ws = [g.weight(f"{name}/kernel", layer.params["kernel"])]
        if layer.use_bias:
            ws.append(g.weight(f"{name}/bias", layer.params["bias"]))
        g.node("Conv", node, ws, kernel_shape=[R, S], strides=list(layer.strides),
               pads=[top, left, bottom, right], dilations=list(layer.dilation_rate),
               group=layer.groups)
        g.activation(layer.activation, node, layer.negative_slope)
    elif isinstance(layer, _layers.Dense):
        ws = [g.weight(f"{name}/kernel", layer.params["kernel"])]
        if layer.use_bias:
            ws.append(g.weight(f"{name}/bias", layer.params["bias"]))
        g.node("Gemm", node, ws, transB=1)
        g.activation(layer.activation, node, layer.negative_slope)
    elif isinstance(layer, _layers.MaxPool2D):
        _c, H, W = layer.input_shape  # type: ignore[misc]
        (kh, kw), (sh, sw), (dh, dw) = layer.pool_size, layer.strides, layer.dilation_rate
        if layer.padding == "same":
            top, bottom = same_padding(H, kh, sh, dh)
            left, right = same_padding(W, kw, sw, dw)
        else:
            top = left = bottom = right = 0
        if max(top, bottom) >= kh or max(left, right) >= kw:
            # a dilated "same" window: onnxruntime (and PyTorch) want pads < kernel_shape
            inf = g.const(f"{node}/pad_value", np.array(-np.inf, np.float32))
            g.node("Pad", f"{node}/pad", [g.const(f"{node}/pads", np.array(
                [0, 0, top, left, 0, 0, bottom, right], np.int64)), inf], mode="constant")
            top = left = bottom = right = 0
        g.node("MaxPool", node, kernel_shape=[kh, kw], strides=[sh, sw],
               pads=[top, left, bottom, right],
               **({"dilations": [dh, dw]} if (dh, dw) != (1, 1) else {}))
    elif isinstance(layer, _layers.Flatten):
        g.node("Flatten", node, axis=1)
    elif isinstance(layer, _layers.Dropout | _layers.InputLayer):
        return  # identity at inference
    elif isinstance(layer, _layers.Activation):
        g.activation(layer.activation, node, layer.negative_slope, layer.approximate)
    elif isinstance(layer, _layers.Add):
        g.node("Add" if len(inputs or ()) == 2 else "Sum", node, inputs=inputs)
    elif isinstance(layer, _layers.Concatenate):
        rank = 1 + len(layer.output_shape)  # type: ignore[arg-type]
        g.node("Concat", node, inputs=inputs, axis=layer.axis % rank)
    elif not _add_new_layer(g, layer, node, name):
        raise ValueError(f"export: no ONNX translation for layer {layer._label()} of type "
                         f"{type(layer).__name__}; supported: Conv2D, Dense, MaxPool2D, "
                         f"AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, "
                         f"BatchNormalization, Flatten, Reshape, ZeroPadding2D, Dropout, "
                         f"Activation / ReLU / LeakyReLU / Softmax, Add, Concatenate")


def _add_new_layer(g: _Graph, layer: _layers.Layer, node: str, name: str) -> bool:
    """:func:`_add_layer` for the average and global poolings, BatchNormalization, Reshape and
    ZeroPadding2D (``node``: the name of this call's nodes, ``name`` its weights'); False for
    another type."""
    if isinstance(layer, _layers.AveragePooling2D):
        _c, H, W = layer.input_shape  # type: ignore[misc]
        (kh, kw), (sh, sw) = layer.pool_size, layer.strides
        if layer.padding == "same":
            top, bottom = same_padding(H, kh, sh)
            left, right = same_padding(W, kw, sw)
        else:
            top = left = bottom = right = 0
        g.node("AveragePool", node, kernel_shape=[kh, kw], strides=[sh, sw],
               pads=[top, left, bottom, right], count_include_pad=0)
    elif isinstance(layer, _layers.GlobalAveragePooling2D | _layers.GlobalMaxPooling2D):
        op = "GlobalAveragePool" if isinstance(layer, _layers.GlobalAveragePooling2D) \
            else "GlobalMaxPool"
        g.node(op, node)
        if not layer.keepdims:
            g.node("Flatten", f"{node}/flatten", axis=1)
    elif isinstance(layer, _layers.BatchNormalization):
        C = layer.input_shape[0]  # type: ignore[index]
        p = layer.params
        gamma = p["gamma"] if layer.scale else np.ones(C, np.float32)
        beta = p["beta"] if layer.center else np.zeros(C, np.float32)
        inputs = [g.weight(f"{name}/gamma", gamma), g.weight(f"{name}/beta", beta),
                  g.weight(f"{name}/moving_mean", p["moving_mean"]),
                  g.weight(f"{name}/moving_variance", p["moving_variance"])]
        g.node("BatchNormalization", node, inputs, epsilon=layer.epsilon,
               momentum=layer.momentum)
    elif isinstance(layer, _layers.Reshape):
        shape = np.array([0, *layer.output_shape], np.int64)  # type: ignore[misc]
        g.node("Reshape", node, [g.const(f"{node}/shape", shape)])
    elif isinstance(layer, _layers.ZeroPadding2D):
        t, l, b, r = layer.pads
        g.node("Pad", node, [g.const(f"{node}/pads", np.array([0, 0, t, l, 0, 0, b, r],
                                                                np.int64))], mode="constant")
    else:
        return False
    return True


def _folded(flat: FlatGraph) -> None:
    """Fold, in ``flat``, each BatchNormalization whose input is a Conv2D / Dense node (no
    activation) read by it alone and that is no model output into that node
    (:func:`fastcnn.layers.fold_batch_norm`); the BatchNormalization node becomes a
    pass-through (``layer=None``, one input)."""
    consumers = flat.consumers()
    outs = set(flat.outputs)
    for i, node in enumerate(flat.nodes):
        if node.layer is None or len(node.inputs) != 1:
            continue
        p = node.inputs[0]
        prev = flat.nodes[p]
        if consumers[p] != [i] or p in outs or prev.layer is None:
            continue
        folded = _layers.fold_batch_norm(prev.layer, node.layer)
        if folded is not None:
            prev.layer = folded
            node.layer = None


def _check_opset(opset: Any, onnx: Any) -> int:
    newest = int(onnx.defs.onnx_opset_version())
    if isinstance(opset, bool) or not isinstance(opset, int | np.integer) \
            or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"export: opset must be an int from {MIN_OPSET} to {newest} (the "
                         f"newest this onnx {onnx.__version__} knows), got {opset!r}")
    return int(opset)


def to_onnx(model: Sequential, opset: int = DEFAULT_OPSET, *,
            fold_batch_norm: bool = True) -> Any:
    """The ONNX model of a built ``model`` (see the module docstring for the translation).

    Args:
        model: a built :class:`fastcnn.Sequential` or graph :class:`fastcnn.Model` (on
            either device).
        opset: the default domain's opset version, from 17 to the newest the installed
            ``onnx`` knows.
        fold_batch_norm: fold each BatchNormalization that follows a Conv2D / Dense into it,
            as ``predict`` does (False: a ``BatchNormalization`` node each).

    Returns:
        ``onnx.ModelProto``, checked: input ``"input"`` ``(N, *input_shape)``, output
        ``"output"`` ``(N, *output_shape)`` float32, ``N`` dynamic (for several inputs /
        outputs one graph input / output each, named as the model's, in its order). A model
        whose weights exceed protobuf's 2 GB limit can't be checked in memory:
        :func:`export` checks the file it writes (with external data) instead.

    Raises:
        ImportError: onnx is not installed.
        ValueError: the model is not built, a layer has no translation, a bad ``opset`` or
            ``model.metadata`` that is not JSON-serialisable.
    """
    onnx = require_onnx("export to ONNX")
    opset = _check_opset(opset, onnx)
    model._require_built()
    g = _Graph(onnx, opset)
    if not isinstance(fold_batch_norm, bool):
        raise TypeError(f"export: fold_batch_norm must be a bool, got {fold_batch_norm!r}")
    flat = flatten(model)  # nested models inlined, one node per layer call
    if fold_batch_norm:  # what predict runs: each BatchNormalization folded into its producer
        _folded(flat)
    tensor = [""] * len(flat.nodes)  # the ONNX tensor of each node's output
    for i, name in zip(flat.inputs, flat.input_names, strict=True):
        tensor[i] = name
    for i, node in enumerate(flat.nodes):
        if node.layer is None:
            if node.inputs:  # a folded BatchNormalization: its input passes through
                tensor[i] = tensor[node.inputs[0]]
            continue
        g.current = tensor[node.inputs[0]]
        _add_layer(g, node.layer, [tensor[j] for j in node.inputs], node.name, node.weights)
        tensor[i] = g.current
    _name_outputs(g, flat, tensor)
    f32 = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes, str(model.name),
        [onnx.helper.make_tensor_value_info(n, f32, ["N", *s])
         for n, s in zip(flat.input_names, flat.input_shapes, strict=True)],
        [onnx.helper.make_tensor_value_info(n, f32, ["N", *s])
         for n, s in zip(flat.output_names, flat.output_shapes, strict=True)],
        initializer=g.initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   producer_name="fastcnn",
                                   producer_version=_native.cpu.__version__)
    proto.ir_version = min(proto.ir_version, _ir_version_for(onnx, opset))
    props = {}
    if model.metadata:
        try:
            props[METADATA_KEY] = json.dumps(model.metadata)
        except TypeError as e:
            raise ValueError(f"export: model.metadata must be JSON-serialisable: {e}") from e
    if flat.multi_in or flat.multi_out:  # how load_onnx rebuilds the model's lists / dicts
        props[STRUCTURE_KEY] = json.dumps({
            "inputs": flat.input_names, "outputs": flat.output_names,
            "input_keys": flat.input_keys, "output_keys": flat.output_keys})
    if props:
        onnx.helper.set_model_props(proto, props)
    if not needs_external_data(proto):
        onnx.checker.check_model(proto, full_check=True)
    return proto


def _name_outputs(g: _Graph, flat: FlatGraph, tensor: list[str]) -> None:
    """Give each model output its graph output name: the node computing it is renamed, or,
    when that tensor is a graph input, read by other nodes or another output's too, an
    ``Identity`` to the name is added."""
    renamed: dict[str, str] = {n: n for n in flat.input_names}  # tensor -> its name now
    for i, name in zip(flat.outputs, flat.output_names, strict=True):
        final = tensor[i]
        producer = next((nd for nd in g.nodes if final in nd.output), None)
        if producer is None or final in renamed or any(final in nd.input for nd in g.nodes):
            g.nodes.append(g.onnx.helper.make_node("Identity", [renamed.get(final, final)],
                                                   [name], name=f"{name}/identity"))
        else:
            producer.output[0] = name
            renamed[final] = name


def _ir_version_for(onnx: Any, opset: int) -> int:
    """The IR version that goes with ``opset`` (so that runtimes that support that opset
    accept the file; ``make_model`` would stamp the newest IR this onnx knows)."""
    for entry in onnx.helper.VERSION_TABLE:  # (release, ir_version, ai.onnx opset, ...)
        if entry[2] == opset:
            return int(entry[1])
    return int(onnx.IR_VERSION)


def export(model: Sequential, filepath: str | os.PathLike[str], format: str = "onnx", *,
           opset: int = DEFAULT_OPSET, fold_batch_norm: bool = True,
           external_data: bool | None = None) -> None:
    """:meth:`Sequential.export`: write :func:`to_onnx`'s model to ``filepath``, atomically
    (a temporary file in the same directory, then ``os.replace``); with external data the
    weights go to ``<filepath>.data`` beside it first (:mod:`fastcnn.onnx._external`)."""
    if format not in SUPPORTED_FORMATS:
        raise ValueError(f"export: format must be one of {list(SUPPORTED_FORMATS)}, got "
                         f"{format!r}")
    if external_data is not None and not isinstance(external_data, bool):
        raise TypeError(f"export: external_data must be True, False or None (automatic: above "
                        f"protobuf's 2 GB limit), got {external_data!r}")
    proto = to_onnx(model, opset, fold_batch_norm=fold_batch_norm)
    big = needs_external_data(proto)
    if external_data is False and big:
        raise ValueError(f"export: the model's weights are {initializer_bytes(proto)} bytes, "
                         f"over protobuf's 2 GB limit for one .onnx file; pass "
                         f"external_data=True (or leave it None) to write them to "
                         f"{data_file_name(filepath)!r} beside it")
    if external_data or big:
        onnx = require_onnx("export to ONNX")
        write_with_external_data(onnx, proto, filepath)
        if big:  # to_onnx could not check it in memory
            onnx.checker.check_model(os.fspath(filepath), full_check=True)
        return
    data = proto.SerializeToString()
    atomic_write(filepath, lambda f: f.write(data))


class Exportable:
    """The export method of a model: :class:`fastcnn.Sequential` inherits it (as it inherits
    :class:`fastcnn.trainer.Trainer`'s and :class:`fastcnn.saving.Saveable`'s), so this
    package never imports :mod:`fastcnn.model`; :func:`fastcnn.onnx.load_onnx` finds the
    model class among this class's subclasses."""

    def export(self, filepath: str | os.PathLike[str], format: str = "onnx", *,
               opset: int = DEFAULT_OPSET, fold_batch_norm: bool = True,
               external_data: bool | None = None) -> None:
        """Write the model for inference in another runtime (Keras 3's ``export``).

        Args:
            filepath: the file to write (``.onnx``).
            format: ``"onnx"``, the only format so far.
            opset: the ONNX opset (17 to the newest the installed onnx knows).
            fold_batch_norm: fold a BatchNormalization into the Conv2D / Dense before it, as
                :meth:`predict` does (the default); False writes it as its own node.
            external_data: write the weights (each tensor of 1 KiB or more) to
                ``<filepath>.data`` beside the ``.onnx`` (ONNX's external-data format;
                ``onnx.load`` and onnxruntime read it from the model's directory); None (the
                default) does so only when they exceed protobuf's 2 GB limit for one file,
                False never (a ValueError above the limit).

        The graph takes ``(N, *input_shape)`` float32 with a dynamic ``N`` and returns what
        :meth:`predict` returns (:mod:`fastcnn.onnx.export` lists the translation).

        Raises:
            ValueError: an unknown ``format``, a bad ``opset``, the model not built, a
                layer with no ONNX translation, or ``external_data=False`` for weights over
                the 2 GB limit.
            TypeError: ``external_data`` is not a bool or None.
            ImportError: onnx is not installed (``pip install "fastcnn[onnx]"``).
        """
        export(self, filepath, format, opset=opset,  # type: ignore[arg-type]
               fold_batch_norm=fold_batch_norm, external_data=external_data)
