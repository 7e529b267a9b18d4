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
from lfakit.catalog import LOSSES, user_loss_meta
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


def register(name: str, cls: type, task: str | None = None, *, mean_over: str | None = None,
             output: str | None = None, args: dict | None = None, replace: bool = False) -> type:
    """Register a loss class under ``name`` so every experiment of its ``task`` can train it by
    name (``losses=[..., name]``), as the library's losses are.

    ``cls`` is an ``nn.Module`` subclass whose instances take ``(logits, targets)`` (IQA:
    ``(pred, mos, std=None)``), every ``__init__`` argument with a default. ``task`` is
    ``multilabel`` | ``multiclass`` | ``iqa`` (else the class's ``task`` attribute);
    ``mean_over`` / ``output`` are the metadata the library's multi-label losses carry (see
    :mod:`lfakit.catalog`). ``args`` is the argument table parameter validation checks
    ``loss_kwargs`` against (name -> :class:`lfakit.schemas._loss_args.Arg`); by default it is
    read from the signature. ``replace=True`` re-registers a user loss (a notebook cell run
    twice); a library loss is never replaced.

    A loss registered here lives in this process (a notebook's kernel): ``lfakit run`` and the
    workers of a sweep are other processes, which find a loss only through an installed
    package's ``lfakit.losses`` entry point (see docs/losses.md). :func:`lfakit.losses.check`
    holds a new loss to the library's standard. Returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ParameterError(f"loss {name!r}: register an nn.Module subclass, got {cls!r}")
    if name in LOSSES:
        if not LOSSES.meta(name).get("user"):
            raise ParameterError(f"{name!r} is one of the library's losses; register yours under another name")
        if not replace:
            raise ParameterError(f"loss {name!r} is already registered ({LOSSES.meta(name).get('source')}); "
                                 "pass replace=True to register it again")
    meta = user_loss_meta(name, cls, task, mean_over=mean_over, output=output, args=args)
    LOSSES.add(name, cls, replace=True, **meta)
    cls.registry_name = name
    cls.task = meta["task"]
    return cls


def unregister(name: str) -> None:
    """Remove a loss added by :func:`register` (the library's losses stay)."""
    from lfakit.schemas._loss_args import LOSS_ARGS

    if not LOSSES.meta(name).get("user"):
        raise ParameterError(f"{name!r} is one of the library's losses; only registered user losses can be removed")
    LOSSES.remove(name)
    LOSS_ARGS.pop(name, None)
