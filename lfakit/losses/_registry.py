"""Build losses by name, list them by task, reject unknown names and arguments.

The names, tasks and classes live in one place, the kit's loss registry
(:data:`lfakit.catalog.LOSSES`, a :class:`lfakit.registry.Registry`), which parameter
validation reads without importing torch. This module is the losses' view of it: loading a
class through it stamps the class with its ``registry_name`` and ``task``.
"""

from __future__ import annotations

import inspect

from torch import nn

from lfakit.catalog import LOSS_TASKS as TASKS
from lfakit.catalog import LOSSES
from lfakit.errors import ParameterError, close_matches


def get(name: str) -> type:
    """The class registered under ``name`` (unknown names: the registry's "did you mean" error)."""
    cls = LOSSES.get(name)
    if getattr(cls, "registry_name", None) is None or cls.__dict__.get("registry_name") != name:
        cls.registry_name = name
        cls.task = LOSSES.meta(name)["task"]
    return cls


def task_of(name: str) -> str:
    """The task ('multilabel', 'multiclass', 'iqa') of loss ``name``."""
    return LOSSES.meta(name)["task"]


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
    cls = get(name)
    valid = accepted_kwargs(name)
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        k = unknown[0]
        raise ParameterError(
            f"loss {name!r} has no argument {k!r}.{close_matches(k, valid)} "
            f"Its arguments are: {', '.join(valid) or '(none)'}."
        )
    return cls(**kwargs)


def available(task: str | None = None):
    """Registered loss names: a dict task -> sorted names, or the sorted list for one task."""
    if task is not None:
        if task not in TASKS:
            raise ParameterError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}.")
        return sorted(LOSSES.names(task=task))
    return {t: sorted(LOSSES.names(task=t)) for t in TASKS}
