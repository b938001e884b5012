"""The functional API: ``fastcnn.Model(inputs, outputs)``, a model that is any directed acyclic
graph of layers (a :class:`Functional`, as in Keras).

::

    x = fastcnn.Input((3, 32, 32))                       # per-sample shape, NCHW
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    h = layers.Conv2D(16, 3, padding="same")(h)
    y = layers.ReLU()(layers.Add()([h, x_or_a_projection]))
    model = fastcnn.Model(x, y)

Calling a layer on symbolic tensors records a node (:mod:`fastcnn.layers.symbolic`);
``Model(inputs, outputs)`` walks the nodes back from the output, orders them (a depth-first
post-order from the output, visiting each node's inputs in their order: it depends only on the
graph, so a model rebuilt from its config has the same order), names the unnamed layers
(``<kind>``, ``<kind>_1``, ... in that order) and creates the weights from ``seed``.
Everything else (``fit`` / ``evaluate`` / ``predict``, ``train_on_batch``, ``save`` /
``load_model``, ``to_json`` / ``model_from_json``, ``to("cuda")``, ``get_layer``, frozen layers,
``summary``, ``export``) is shared with :class:`fastcnn.Sequential`, which is a special case of
this class (:mod:`fastcnn.model_base`).

Inputs and outputs: a tensor (or a list of one) each, or several as a list or a dict, as in
Keras: ``Model([in_a, in_b], [out_1, out_2])`` takes a list of arrays (or a dict keyed by the
Input names) and returns a list of outputs; ``Model({"img": a, "meta": b}, {"cls": c})`` takes
and returns dicts by those keys. ``compile`` then takes a loss per output (one for all, a
list, or a dict by output name: :attr:`Functional.output_names`), ``loss_weights`` and metrics
per output; ``fit`` trains on the weighted sum of the outputs' losses and logs ``loss``,
``<output>_loss`` and ``<output>_<metric>`` (:mod:`fastcnn._outputs`). The batches slice every
array with one index (one shuffle: :class:`fastcnn._structure.Arrays`).

A model is also a layer of another (Keras' nested models): ``encoder(x)`` on a symbolic tensor
records one node whose layer is the ``encoder`` object itself (its weights shared, trained
through, saved as its nested config; :mod:`fastcnn.model_base`). A model with several outputs
gives one tensor per output (``cls, reg = heads(x)``; :mod:`fastcnn._multi_call`).

Forward: the nodes in order, each layer's ``forward`` on its inputs' values (a merge layer
gets a list); a value is dropped as soon as its last consumer has run (never an output's).
``logits=True`` (or one flag per output) skips the output layers' activation (the loss fusion
of Sequential), on outputs no other node consumes.

Backward: the nodes in reverse order, from one gradient per output (None: that output adds
nothing). A tensor used by several nodes (fan-out) gets the sum of their gradients, added in
the consumers' node order (``((g1 + g2) + g3)``, float32; an output's own gradient last): the
same result every run, whatever path reached it first. A node runs its backward only when a weight
or the requested ``dx`` lies upstream of it; a layer with no such input skips its ``dx``
(``compute_dx=False``: a convolution then skips a third of its backward), which generalises
Sequential's first-layer rule.

Fusions, as in Sequential, applied where the graph allows:

* Conv2D / Dense with ``activation="relu"``: inside the layer, as always.
* The pooled gradient (a Conv2D's backward absorbing a following MaxPool2D's): when the
  convolution's output has the pooling as its only consumer. With fan-out the full-size
  gradient is needed anyway, so the two run apart.
* A softmax / sigmoid output with the matching cross-entropy: on the output node.
* A layer that applies the activation of its only consumer in its own pass (a
  BatchNormalization and a ReLU: :func:`fastcnn.layers.base.fused_activation`): the consumer
  node passes through, forward and backward (not when the producer is an output, nor for an
  output whose activation a ``logits`` pass skips).

A layer called several times (shared weights) runs one backward per call; the model keeps each
call's forward cache (the layer's ``_cache``: a custom layer shared this way keeps its forward
state there) and the later calls add to the weights' gradients.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _graph, _graph_backward, _outputs, _workspace
from . import layers as _layers
from ._arrays import as_array
from ._multi_call import call_multi_output, is_output_of
from ._structure import Arrays, parts
from .layers.input import InputLayer
from .layers.symbolic import SymbolicTensor, is_symbolic
from .model_base import Model, _layout_hint

__all__ = ["Functional"]


class Functional(Model):
    """A model made of a graph of layers (Keras' ``Functional``: what ``fastcnn.Model(inputs,
    outputs)`` returns).

    Args:
        inputs: the ``fastcnn.Input(shape)`` tensor, or several as a list or a dict (the
            model then takes a list / dict of arrays).
        outputs: the tensor the model returns, made by layers called on ``inputs``, or several
            as a list or a dict (the model then returns a list / dict of arrays).
        name: shown by :meth:`summary`.
        seed: seed of the weight initialisation, layers in :attr:`layers` order; None gives
            fresh random weights. Layers that had weights before their first call in the
            graph (taken from another model, or a model used as a layer) keep them.

    Raises:
        TypeError: ``inputs`` / ``outputs`` are not symbolic tensors.
        ValueError: an input that is not an ``Input``, an output not computed from the inputs
            or an input no output uses (the graph is disconnected), a graph that is not a
            DAG, two layers with one name or two outputs with one name (each message names
            the layers).
    """

    def __init__(self, inputs: Any, outputs: Any, *, name: str = "model",
                 seed: int | None = None) -> None:
        self._init_model(name, seed)
        ins, in_keys, multi_in = _graph.tensors_of(inputs, "inputs")
        outs, out_keys, multi_out = _graph.tensors_of(outputs, "outputs")
        for t in ins:
            if not isinstance(t.layer, InputLayer):
                raise ValueError(f"Model: the input must be a fastcnn.Input(...) tensor, got "
                                 f"{t.describe()}")
        self._in_keys, self._out_keys = in_keys, out_keys
        self._multi_in, self._multi_out = multi_in, multi_out
        self._set_graph(_graph.topological(ins, outs), ins, outs)
        self._create_weights(only_fresh=True)
        self.built = True

    # -- structure --------------------------------------------------------------------------
    def _set_graph(self, nodes: list[Any], ins: list[SymbolicTensor],
                   outs: list[SymbolicTensor]) -> None:
        """Index the ordered nodes and name the layers."""
        self._graph = nodes
        index = {id(n): i for i, n in enumerate(nodes)}
        self._inputs_of = [tuple(index[id(t.node)] for t in n.inputs) for n in nodes]
        self._multi = [bool(n.layer.multi_input) for n in nodes]
        self._consumers: list[list[int]] = [[] for _ in nodes]
        for i, ins_i in enumerate(self._inputs_of):
            for j in ins_i:
                self._consumers[j].append(i)
        layers: list[_layers.Layer] = []
        calls: dict[int, int] = {}
        self._call_index = []
        for n in nodes:
            k = calls.get(id(n.layer), 0)
            if k == 0 and not is_output_of(n.layer):  # a pick of a model's output: no layer
                layers.append(n.layer)
            calls[id(n.layer)] = k + 1
            self._call_index.append(k)
        self._shared = [calls[id(n.layer)] > 1 for n in nodes]
        _graph.name_layers(layers)
        self.layers = layers
        self._in_nodes = [index[id(t.node)] for t in ins]
        self._out_nodes = [index[id(t.node)] for t in outs]
        self._out_set = frozenset(self._out_nodes)
        #: the names the data is keyed by: the dict keys, else the Input layers' names
        self.input_names = self._in_keys or [nodes[i].layer.name for i in self._in_nodes]
        #: the outputs' names (Keras' ``output_names``): the dict keys, else the names of the
        #: layers that make them; ``compile``'s dicts and the logs use them
        self.output_names = self._out_keys or [nodes[i].layer.name for i in self._out_nodes]
        if len(set(self.output_names)) != len(self.output_names):
            raise ValueError(f"Model: two outputs have one name ({self.output_names}: the "
                             f"layers that make them); give the outputs distinct names, e.g. "
                             f"pass outputs as a dict or end one with a named layer")
        shapes = [tuple(nodes[i].layer.shape) for i in self._in_nodes]
        self.input_shape = shapes if self._multi_in else shapes[0]  # type: ignore[assignment]
        self._node_caches: dict[int, Any] = {}

    def __call__(self, x: Any, training: bool = False, logits: Any = False) -> Any:
        """As :meth:`fastcnn.Model.__call__`; on symbolic tensors a model with several outputs
        returns one tensor per output (a list, or a dict as its outputs; Keras' nested
        multi-output models: :mod:`fastcnn._multi_call`)."""
        symbolic = is_symbolic(x) or (isinstance(x, dict) and any(
            isinstance(v, SymbolicTensor) for v in x.values()))
        if symbolic and self._multi_out:
            return call_multi_output(self, x)
        return super().__call__(x, training, logits)

    @property
    def multi_input(self) -> bool:  # type: ignore[override]
        """Whether the model (used as a layer) takes a list of inputs."""
        return bool(getattr(self, "_multi_in", False))

    @property
    def inputs(self) -> list[SymbolicTensor]:
        """The model's input tensors (a list), Keras' ``model.inputs``."""
        return [self._graph[i].output for i in self._in_nodes]

    @property
    def outputs(self) -> list[SymbolicTensor]:
        """The model's output tensors (a list), Keras' ``model.outputs``."""
        return [self._graph[i].output for i in self._out_nodes]

    @property
    def output_shape(self) -> Any:
        """Per-sample output shape (a list of them for several outputs)."""
        shapes = [tuple(self._graph[i].output.shape) for i in self._out_nodes]
        return shapes if self._multi_out else shapes[0]

    def _output_layer(self) -> _layers.Layer:
        if self._multi_out:
            raise ValueError(f"model {self.name!r} has several outputs {self.output_names}")
        return self._graph[self._out_nodes[0]].layer  # type: ignore[no-any-return]

    def _nodes(self) -> tuple[list[tuple[_layers.Layer | None, tuple[int, ...]]], int]:
        """The graph as ``(layer, input node indices)`` per node in order (``None`` for the
        model's input), and the output node's index, for a model with one input and one
        output (ValueError otherwise; the exporters use :func:`fastcnn._flat.flatten`, which
        takes any model)."""
        if self._multi_in or self._multi_out:
            raise ValueError(f"model {self.name!r} has {len(self._in_nodes)} input(s) and "
                             f"{len(self._out_nodes)} output(s) {self.output_names}: _nodes() "
                             f"lists models with one input and one output (use "
                             f"fastcnn._flat.flatten for any model)")
        return ([(None if not ins else n.layer, ins)
                 for n, ins in zip(self._graph, self._inputs_of, strict=True)],
                self._out_nodes[0])

    def _create_weights(self, only_fresh: bool, seed: Any = None) -> None:
        self._rng = np.random.default_rng(self.seed if seed is None else seed)
        for layer in self.layers:
            if isinstance(layer, InputLayer):
                continue
            if not only_fresh or getattr(layer, "_built_by_call", False):
                layer.build(layer.input_shape, self._rng)  # type: ignore[arg-type]
                layer._built_by_call = False  # type: ignore[attr-defined]
            layer.to_device(self.device)
        self._node_caches = {}

    def build(self, input_shape: Any = None, seed: Any = None) -> Any:
        """Re-create every layer's weights from ``np.random.default_rng(seed)`` (``seed``
        defaults to the model's; a model used as a layer re-creates its own too);
        ``input_shape``, if given, must be the model's. Returns the per-sample output shape
        (the layer protocol's ``build``)."""
        if input_shape is not None and _norm(input_shape) != _norm(self.input_shape):
            raise ValueError(f"build: the model {self.name!r} takes inputs of shape "
                             f"{self.input_shape} (its Input), got input_shape={input_shape}")
        self._create_weights(only_fresh=False, seed=seed)
        return self.output_shape

    # -- data -------------------------------------------------------------------------------
    def _input(self, x: Any, who: str, name: str = "x") -> Any:
        """``x`` as the model's input: one array (converted as :meth:`Model._input` does; a
        dict of one or a list of one array is unwrapped), or for several inputs an
        :class:`~fastcnn._structure.Arrays` of them (from a list in input order or a dict
        keyed by :attr:`input_names`)."""
        if not self._multi_in:
            if _one_array(x):
                x = _outputs.arrange(x, self.input_names, self.name, "inputs", who)[0]
            return super()._input(x, who, name)
        arrays = _outputs.arrange(x, self.input_names, self.name, "inputs", who)
        return Arrays([super(Functional, self)._input(a, who, f"{name}[{n!r}]")
                       for a, n in zip(arrays, self.input_names, strict=True)],
                      self.input_names, who)

    def _on_device(self, a: Any) -> Any:
        if isinstance(a, Arrays):
            return Arrays([super(Functional, self)._on_device(v) for v in a.arrays], a.names)
        return super()._on_device(a)

    def _targets(self, y: Any, who: str) -> Any:
        """The labels as the compiled loss takes them: one array, or for several outputs an
        :class:`~fastcnn._structure.Arrays` in output order (from a list or a dict keyed by
        :attr:`output_names`; an output compiled without a loss may be left out)."""
        if not self._multi_out:
            if isinstance(y, dict):
                y = _outputs.arrange(y, self.output_names, self.name, "outputs", who)[0]
            return as_array(y, "y", who)
        losses = getattr(self.loss, "losses", None) or [True] * len(self.output_names)
        optional = frozenset(n for n, lo in zip(self.output_names, losses, strict=True)
                             if lo is None)
        ys = _outputs.arrange(y, self.output_names, self.name, "outputs", who, optional)
        return Arrays([None if v is None else as_array(v, f"y[{n!r}]", who)
                       for v, n in zip(ys, self.output_names, strict=True)],
                      self.output_names, who)

    def _pack_data(self, x: Any, y: Any = None, class_weight: Any = None) -> tuple[Any, Any]:
        """``fit`` / ``evaluate`` / ``predict``'s ``x`` and ``y`` arrays as
        :class:`~fastcnn._structure.Arrays` where the model has several inputs / outputs
        (host arrays, sliced by the batching); anything else as it is. ValueError for
        ``class_weight`` with several outputs (as Keras: pass ``sample_weight``)."""
        if self._multi_out and class_weight is not None:
            raise ValueError(f"fit: class_weight is not supported for model {self.name!r}, "
                             f"which has several outputs {self.output_names} (as in Keras); "
                             f"pass sample_weight=w (N,), computed from the labels")
        if self._multi_in and isinstance(x, list | tuple | dict):
            x = Arrays(_outputs.arrange(x, self.input_names, self.name, "inputs", "fit"),
                       self.input_names, "fit")
        elif _one_array(x):  # one input given as [x] or {name: x}
            x = _outputs.arrange(x, self.input_names, self.name, "inputs", "fit")[0]
        if self._multi_out and isinstance(y, list | tuple | dict):
            y = self._targets(y, "fit")
        elif _one_array(y):
            y = _outputs.arrange(y, self.output_names, self.name, "outputs", "fit")[0]
        return x, y

    def _present(self, outs: Any) -> Any:
        """The outputs as the user gets them: a list, or a dict keyed as ``outputs`` was."""
        if self._multi_out and self._out_keys:
            return dict(zip(self._out_keys, outs, strict=True))
        return outs

    def _ensure_built(self, x: Any) -> None:
        xs = parts(x) if self._multi_in else [x]
        for a, i, n in zip(xs, self._in_nodes, self.input_names, strict=True):
            want_shape = tuple(self._graph[i].layer.shape)
            if tuple(a.shape[1:]) != want_shape:
                layer = self._graph[i].layer
                want = ", ".join(str(s) for s in want_shape)
                got = ", ".join(str(s) for s in a.shape[1:])
                hint = _layout_hint(tuple(a.shape[1:]), want_shape)
                what = f" (input {n!r})" if self._multi_in else ""
                raise ValueError(f"model {self.name!r}: the input layer {layer.name!r}{what} "
                                 f"expects inputs of shape (N, {want}), got (N, {got})"
                                 + (f". {hint}" if hint else ""))

    @property
    def flops(self) -> int:
        """Forward FLOPs per sample (sum over the layer calls)."""
        self._require_built()
        return sum(n.layer.flops for n in self._graph if n.inputs)

    def _connections(self) -> list[list[str]] | None:
        per_layer: dict[int, list[str]] = {id(lay): [] for lay in self.layers}
        for n, ins in zip(self._graph, self._inputs_of, strict=True):
            if id(n.layer) in per_layer:
                per_layer[id(n.layer)].extend(_graph.ref_text(self, j) for j in ins)
        return [per_layer[id(lay)] for lay in self.layers]

    # -- compile ----------------------------------------------------------------------------
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None,
                weighted_metrics: Any = None, loss_weights: Any = None) -> None:
        """As :meth:`fastcnn.Model.compile`; for several outputs (Keras' rules) ``loss`` is
        one loss for every output, a list (one per output, None: not trained) or a dict by
        :attr:`output_names`; ``loss_weights`` a list or dict of floats (the model's loss is
        ``sum(w_k * loss_k)``); ``metrics`` / ``weighted_metrics`` one list for every output,
        a list of lists or a dict by output name. The logs then hold ``loss``,
        ``<output>_loss`` and ``<output>_<metric>``.

        Raises:
            ValueError: a list of the wrong length or a dict naming an unknown output (the
                message names the model and its outputs), no loss at all."""
        if not self._multi_out:
            super().compile(optimizer, loss, metrics, weighted_metrics, loss_weights)
            return
        from . import optimizers as _optimizers

        if loss is None:
            raise ValueError(f"compile: a loss is required (model {self.name!r} has outputs "
                             f"{self.output_names}: one loss, a list or a dict)")
        losses, plain, weighted = _outputs.compile_outputs(
            self.name, self.output_names, loss, metrics, weighted_metrics, loss_weights)
        self.optimizer, self.loss = _optimizers.get(optimizer), losses
        self.metrics, self.weighted_metrics = plain, weighted
        self._check_loss_activation()
        self._place_optimizer_state()

    @property
    def output_fused(self) -> Any:
        """As :attr:`fastcnn.Model.output_fused`; for several outputs one flag per output
        (an output another node also consumes is never fused)."""
        if not self._multi_out:
            return super().output_fused and not self._consumers[self._out_nodes[0]]
        return _outputs.fused_flags(self)

    def _check_loss_activation(self) -> None:
        if not self._multi_out:
            super()._check_loss_activation()
            return
        _outputs.check_activations(self)

    # -- running ----------------------------------------------------------------------------
    def _drop_caches(self) -> None:
        self._node_caches = {}

    def _skipped_activations(self, logits: Any) -> set[int]:
        """The output nodes whose activation the forward skips: every output for
        ``logits=True``, those flagged for one flag per output; ValueError for an output
        another node consumes (its activated value is needed)."""
        if isinstance(logits, tuple | list):
            flags = list(logits)
        else:
            flags = [bool(logits)] * len(self._out_nodes)
        skip = {i for i, f in zip(self._out_nodes, flags, strict=True) if f}
        for i in skip:
            if self._consumers[i]:
                raise ValueError(f"model {self.name!r}: logits=True can't skip the activation "
                                 f"of {self._graph[i].layer._label()}: other layers consume "
                                 f"its output")
        return skip

    @_workspace.in_model_workspace
    def _forward(self, x: Any, training: bool, logits: Any) -> Any:
        graph, inputs_of, multi, shared = self._graph, self._inputs_of, self._multi, self._shared
        values: list[Any] = [None] * len(graph)
        for i, a in zip(self._in_nodes, parts(x) if self._multi_in else [x], strict=True):
            values[i] = a
        remaining = [len(c) for c in self._consumers]
        for i in self._out_nodes:
            remaining[i] += 1  # an output's value is kept
        skip = self._skipped_activations(logits) if logits else set()
        caches: dict[int, Any] = {}
        self._node_caches = caches
        folds = {} if training else self._folds()
        acts, through = _graph.activation_fusions(self, folds, skip)
        stats_to = _graph.batch_stats_fusions(self) if training else {}
        given: dict[int, Any] = {}  # consumer node -> the batch statistics its producer gathered
        if training:
            self._fused_through = through
        for i, node in enumerate(graph):
            ins = inputs_of[i]
            if not ins:
                continue
            layer = folds.get(i, node.layer)
            arg = [values[j] for j in ins] if multi[i] else values[ins[0]]
            kw = {"batch_stats": given.pop(i)} if i in given else {}
            if layer is None or i in through:  # folded into / fused with the layer before it
                y = arg
            elif i in skip and layer.has_activation:
                y = layer.forward(arg, training, apply_activation=False)
            elif i in acts:
                y = layer.forward(arg, training, fused_activation=acts[i], **kw)
            elif i in stats_to:
                y, given[stats_to[i]] = layer.forward(arg, training, return_batch_stats=True)
            else:
                y = layer.forward(arg, training, **kw)
            if training and shared[i]:
                caches[i] = layer._cache
            values[i] = y
            for j in ins:
                remaining[j] -= 1
                if remaining[j] == 0:
                    values[j] = None
        outs = [values[i] for i in self._out_nodes]
        return outs if self._multi_out else outs[0]

    def _folds(self) -> dict[int, Any]:
        """For an inference pass: node -> the layer to run instead. A Conv2D / Dense node (no
        activation) whose only consumer is a BatchNormalization (and that is no output) runs
        :func:`fastcnn.layers.fold_batch_norm`'s folded copy (made from the current weights),
        and that BatchNormalization node ``None`` (its input passes through), as
        :func:`fastcnn.layers.inference_layers` does for a stack."""
        folds: dict[int, Any] = {}
        for i, node in enumerate(self._graph):
            ins = self._inputs_of[i]
            if len(ins) != 1 or self._multi[i] or self._consumers[ins[0]] != [i] \
                    or ins[0] in self._out_set or isinstance(node.layer, Model):
                continue
            prev = self._graph[ins[0]].layer
            if isinstance(prev, Model) or not self._inputs_of[ins[0]]:
                continue
            folded = _layers.fold_batch_norm(prev, node.layer)
            if folded is not None:
                folds[ins[0]], folds[i] = folded, None
        return folds

    @_workspace.in_model_workspace
    def backward(self, dy: Any, accumulate: bool = False, compute_dx: Any = None) -> Any:
        """Backward pass after ``model(x, training=True)``: ``dy`` (gradient of the loss with
        respect to that call's output; for several outputs a list or dict of them, None for
        an output that adds nothing) -> ``dx`` (N, *input_shape), a list of them for several
        inputs, or None with ``compute_dx=False`` (default: the :attr:`compute_dx` attribute,
        True unless the model is a layer whose caller needs no dx). Writes each trainable
        layer's ``grads`` (adds to them with ``accumulate=True``; a shared layer's later calls
        always add). See the module docstring for the order of the fan-out sums and the
        fusions."""
        return _graph_backward.backward(self, dy, accumulate, compute_dx)

    # -- other formats ----------------------------------------------------------------------
    def to_torch(self, *, logits: bool = False) -> Any:
        """An equivalent ``torch.nn.Module`` holding copies of the weights
        (:func:`fastcnn.torch.graph.graph_to_torch`: one ``nn.Sequential`` per layer, run in the
        graph's order, nested models inlined; ``logits=True`` leaves out the output softmax /
        sigmoid). Several inputs: its ``forward`` takes them positionally, as a list or as a
        dict by :attr:`input_names`; several outputs: it returns a tuple (a dict by
        :attr:`output_names` where this model returns a dict). Needs PyTorch
        (``pip install "fastcnn[torch]"``)."""
        from .torch.graph import graph_to_torch  # fastcnn.torch never imports this module

        return graph_to_torch(self, logits=logits)

    def save_weights(self, path: Any) -> None:
        """Write only the weights to one ``.npz`` (``.safetensors`` is refused: its tensor
        names are a ``torch.nn.Sequential``'s, which a graph has not)."""
        _no_safetensors(path, "save_weights")
        super().save_weights(path)

    def load_weights(self, path: Any) -> None:
        """Load weights saved by :meth:`save_weights` or :meth:`save` (all checked first)."""
        _no_safetensors(path, "load_weights")
        super().load_weights(path)

    def get_config(self) -> dict[str, Any]:
        """The graph as a JSON-serialisable dict (Keras' functional layout): per layer its
        class, config and ``inbound_nodes`` (per call, its inputs as ``[layer, call, 0]``);
        ``input_layers`` / ``output_layers`` (a dict by key for a model built from dicts).
        A model used as a layer is there with its own config (nested)."""
        return _graph.graph_config(self)

    @classmethod
    def from_config(cls, config: dict[str, Any],
                    custom_objects: dict[str, type[_layers.Layer]] | None = None) -> Functional:
        """The model of :meth:`get_config` (built, fresh weights from its seed; a nested
        model's from its own). ``custom_objects``: as for
        :meth:`fastcnn.Sequential.from_config`.

        Raises:
            ValueError: not a Model architecture, an unknown layer name in an
                ``inbound_nodes`` entry, or nodes that wait on each other (not a DAG; the
                message names the layers)."""
        if not isinstance(config, dict) or config.get("class_name") != "Functional":
            raise ValueError("not a fastcnn Functional (graph) architecture")
        inputs, outputs = _graph.graph_tensors(config, custom_objects)
        return cls(inputs, outputs, name=config.get("name", "model"), seed=config.get("seed"))


# --------------------------------------------------------------------------------------------
# helpers


def _one_array(x: Any) -> bool:
    """A dict, or a list / tuple of one array (not nested lists of numbers)."""
    return isinstance(x, dict) or (isinstance(x, list | tuple) and len(x) == 1
                                   and hasattr(x[0], "shape"))


def _norm(shape: Any) -> Any:
    if shape and isinstance(shape[0], list | tuple):
        return [tuple(int(s) for s in sh) for sh in shape]
    return tuple(int(s) for s in shape)


def _no_safetensors(path: Any, who: str) -> None:
    if os.fspath(path).endswith(".safetensors"):
        raise ValueError(f"{who}: a graph fastcnn.Model has no .safetensors layout (those "
                         f"tensors are named as a torch.nn.Sequential's state_dict); use an "
                         f".npz name, e.g. 'weights.npz'")
