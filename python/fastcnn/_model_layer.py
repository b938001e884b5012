"""The layer protocol of a model: what lets a :class:`fastcnn.Model` (a stack or a graph) be one
layer of another model. :class:`ModelAsLayer` is a mixin of :class:`fastcnn.model_base.Model`
ahead of :class:`fastcnn.layers.Layer` in its bases, so these definitions take the place of the
single layer's: ``forward`` runs the model's own pass, ``params`` / ``grads`` /
``non_trainable_keys`` name every inner weight ``"<layer>/<param>"``, ``trainable`` freezes
or unfreezes every layer, ``_cache`` is every layer's forward state (what an outer graph keeps
per call of a shared model), and the device, state and parameter-count calls go to each layer.
It reads only what every model has (``layers``, ``_forward``, ``_all_weights``,
``_drop_caches``) and imports no model class.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ModelAsLayer"]


class ModelAsLayer:
    """The :class:`fastcnn.layers.Layer` protocol for a model used as a layer."""

    layers: list[Any]
    name: str
    device: str

    def forward(self, x: Any, training: bool = False,  # type: ignore[override]
                apply_activation: bool = True) -> Any:
        """``model(x)`` as a layer runs it: ``x`` already on the model's device."""
        return self._forward(x, training, not apply_activation)

    @property  # type: ignore[override]
    def params(self) -> dict[str, Any]:
        """Every weight as ``{"<layer>/<param>": array}`` (the model's own arrays)."""
        return self._all_weights()

    @property  # type: ignore[override]
    def grads(self) -> dict[str, Any]:
        """The gradient buffers as ``{"<layer>/<param>": array}``."""
        return {f"{lay.name}/{k}": g for lay in self.layers for k, g in lay.grads.items()}

    @property  # type: ignore[override]
    def non_trainable_keys(self) -> frozenset[str]:  # type: ignore[override]
        """The :attr:`params` keys that are not trained: frozen layers' and state."""
        return frozenset(f"{lay.name}/{k}" for lay in self.layers for k in lay.params
                         if not lay.trainable or k in lay.non_trainable_keys)

    @property  # type: ignore[override]
    def trainable(self) -> bool:  # type: ignore[override]
        """False after ``model.trainable = False``, which freezes every layer (True
        unfreezes them all), as Keras."""
        return bool(getattr(self, "_trainable", True))

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for lay in self.layers:
            lay.trainable = bool(value)

    @property  # type: ignore[override]
    def _cache(self) -> Any:
        """The forward state of the last training call (every layer's cache, and a graph's
        per-node caches): what an outer graph keeps per call of a shared model."""
        return (tuple(lay._cache for lay in self.layers),
                dict(getattr(self, "_node_caches", {})))

    @_cache.setter
    def _cache(self, value: Any) -> None:
        caches, nodes = value if value is not None else ((None,) * len(self.layers), {})
        for lay, c in zip(self.layers, caches, strict=True):
            lay._cache = c
        if hasattr(self, "_node_caches"):
            self._node_caches = dict(nodes)

    def count_trainable_params(self) -> int:
        """Number of scalars the optimizer trains (Keras' "Trainable params")."""
        return sum(lay.count_trainable_params() for lay in self.layers)

    def to_device(self, device: str) -> None:
        """Move the weights to ``device`` (what an outer model's ``to`` calls)."""
        self.device = device
        for lay in self.layers:
            lay.to_device(device)
        self._drop_caches()

    def get_state(self) -> dict[str, Any] | None:
        """The layers' non-weight states (Dropout's generators) by layer name, or None."""
        states = {lay.name: st for lay in self.layers if (st := lay.get_state()) is not None}
        return states or None

    def check_state(self, state: Any) -> Any:
        """Validate :meth:`get_state`'s value (ValueError naming an unknown layer)."""
        if state is None:
            return []
        by_name = {lay.name: lay for lay in self.layers}
        if not isinstance(state, dict) or not set(state) <= set(by_name):
            raise ValueError(f"model {self.name!r}: a layer state names unknown layers "
                             f"({sorted(state) if isinstance(state, dict) else state!r})")
        return [(by_name[k], by_name[k].check_state(v)) for k, v in state.items()]

    def set_state(self, checked: Any) -> None:
        """Assign :meth:`check_state`'s value."""
        for lay, c in checked:
            lay.set_state(c)
