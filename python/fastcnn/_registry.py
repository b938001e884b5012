"""Lookup by name or config, and the config of an object: the one implementation behind
``losses.get`` / ``serialize`` and ``optimizers.get`` / ``serialize``.

A registry knows a kind's built-in classes by their names (``"adam"``, ``"mse"``, ...) and by
their class names (``{"class_name": "Adam", "config": {...}}``, the saved form).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Built-in classes of one kind (``base``), by name and by class name.

    Args:
        kind: the word used in messages (``"loss"``, ``"optimizer"``).
        base: the kind's base class: an instance of it is returned as it is.
        names: name -> class (lower-case names; aliases allowed).
        from_config: how a class is made from a saved config (default ``cls(**config)``).
    """

    def __init__(self, kind: str, base: type[T], names: Mapping[str, type[T]],
                 from_config: Callable[[type[T], dict[str, Any]], T] | None = None) -> None:
        self.kind, self.base, self.names = kind, base, dict(names)
        self.classes = {c.__name__: c for c in self.names.values()}
        self._from_config = from_config or (lambda cls, cfg: cls(**cfg))

    def get(self, identifier: Any) -> T:
        """An object from a name (default arguments), an instance of ``base`` (returned as it
        is) or a ``{"class_name", "config"}`` dict; ValueError naming the choices otherwise."""
        if isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, str) and identifier.lower() in self.names:
            return self.names[identifier.lower()]()
        if isinstance(identifier, dict) and identifier.get("class_name") in self.classes:
            return self._from_config(self.classes[identifier["class_name"]],
                                     identifier.get("config", {}))
        raise ValueError(f"unknown {self.kind} {identifier!r}; expected one of "
                         f"{sorted(self.names)} or a {self.base.__module__}."
                         f"{self.base.__name__}")

    def serialize(self, obj: Any) -> dict[str, Any]:
        """``{"class_name", "config"}`` of a built-in object (ValueError for custom classes)."""
        if type(obj).__name__ not in self.classes:
            raise ValueError(f"cannot serialise the custom {self.kind} {obj!r}")
        return {"class_name": type(obj).__name__, "config": obj.get_config()}
