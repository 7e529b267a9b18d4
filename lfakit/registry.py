"""One small registry type for everything the kit builds by name: losses, models, data sets,
experiments (and attacks next).

An entry is a name, a target and free-form metadata (a loss's task, a model's input channels).
The target is either the object itself or a lazy import path (``"package.module"`` or
``"package.module:attribute"``; a string target is always a path) imported on first
:meth:`Registry.get`. Lazy entries let parameter validation and ``lfakit list``
know every name without importing torch (the CLI answers in well under 1.5 s). Unknown names get
the kit's "Did you mean" error.

Hand-written (about 60 lines): no library in the dependency set offers a registry with lazy
targets, metadata filters and this error message; timm's and pyiqa's registries are the model.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from lfakit.errors import ParameterError, close_matches


@dataclass
class Entry:
    name: str
    target: Any  # the object, or an import path: "package.module" or "package.module:attribute"
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            obj = importlib.import_module(module)
            self.target = getattr(obj, attr) if attr else obj
        return self.target


class Registry:
    """Named entries of one ``kind`` ("loss", "model", ...), in the order they were added.

    ``discover``, if given, is called once (with the registry) before the first listing, or
    the first lookup of a name not yet held: it adds entries found elsewhere, e.g. the installed packages' entry points
    (:func:`lfakit.catalog.discover_loss_plugins`), so every process that asks for a name --
    a ``lfakit run`` worker included -- finds them without being told."""

    def __init__(self, kind: str, discover: Callable[["Registry"], None] | None = None):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._discover = discover

    def _discovered(self) -> dict[str, Entry]:
        if self._discover is not None:
            discover, self._discover = self._discover, None  # once, and not re-entered
            discover(self)
        return self._entries

    def add(self, name: str, target: Any, *, replace: bool = False, **meta) -> None:
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, target, meta)

    def remove(self, name: str) -> Entry:
        """Drop entry ``name`` (unknown names: the "did you mean" error); return it."""
        self.entry(name)
        return self._entries.pop(name)

    def register(self, name: str, **meta):
        """Decorator form of :meth:`add`."""

        def deco(obj):
            self.add(name, obj, **meta)
            return obj

        return deco

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._discovered()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._discovered()))

    def __len__(self) -> int:
        return len(self._discovered())

    def names(self, **meta) -> list[str]:
        """Names whose metadata match every ``key=value`` given, in registration order."""
        return [n for n, e in self._discovered().items() if all(e.meta.get(k) == v for k, v in meta.items())]

    def entry(self, name: str) -> Entry:
        if name not in self._entries and name not in self._discovered():
            raise ParameterError(
                f"unknown {self.kind} {name!r}.{close_matches(name, self._entries)} "
                f"Available: {', '.join(self._entries) or '(none)'}."
            )
        return self._entries[name]

    def meta(self, name: str) -> dict[str, Any]:
        return self.entry(name).meta

    def get(self, name: str) -> Any:
        """The registered object (imported now if it was registered lazily)."""
        return self.entry(name).load()
