"""One registry for every loss: build by name, list by task, reject unknown names/arguments."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from torch import nn

from lfakit.errors import ParameterError, close_matches

TASKS = ("multilabel", "multiclass", "iqa")


@dataclass(frozen=True)
class _Entry:
    cls: type
    task: str


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, task: str):
    """Class decorator: make ``cls`` buildable as ``build(name, ...)`` under ``task``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")

    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"loss {name!r} is already registered")
        _REGISTRY[name] = _Entry(cls, task)
        cls.registry_name = name
        cls.task = task
        return cls

    return deco


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ParameterError(
            f"unknown loss {name!r}.{close_matches(name, _REGISTRY)} "
            f"Available losses: {', '.join(sorted(_REGISTRY))}."
        )
    return _REGISTRY[name]


def get(name: str) -> type:
    """The class registered under ``name``."""
    return _entry(name).cls


def task_of(name: str) -> str:
    """The task ('multilabel', 'multiclass', 'iqa') of loss ``name``."""
    return _entry(name).task


def accepted_kwargs(name: str) -> dict[str, object]:
    """Keyword arguments of loss ``name`` with their defaults."""
    sig = inspect.signature(get(name).__init__)
    return {
        p.name: p.default
        for p in list(sig.parameters.values())[1:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def build(name: str, **kwargs) -> nn.Module:
    """Build loss ``name`` with keyword arguments; unknown names or arguments raise clearly."""
    entry = _entry(name)
    valid = accepted_kwargs(name)
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        k = unknown[0]
        raise ParameterError(
            f"loss {name!r} has no argument {k!r}.{close_matches(k, valid)} "
            f"Its arguments are: {', '.join(valid) or '(none)'}."
        )
    return entry.cls(**kwargs)


def available(task: str | None = None):
    """Registered loss names: a dict task -> sorted names, or the sorted list for one task."""
    if task is not None:
        if task not in TASKS:
            raise ParameterError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}.")
        return sorted(n for n, e in _REGISTRY.items() if e.task == task)
    return {t: sorted(n for n, e in _REGISTRY.items() if e.task == t) for t in TASKS}
