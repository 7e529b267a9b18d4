"""Layers run one way: params -> data -> model -> engine(loss) -> predictions -> metrics/stats ->
tables/figures -> run record. This walks every import statement in ``lfakit/`` (function-level
imports included) and fails on one that runs back up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "lfakit"

# module prefix -> prefixes it must not import
FORBIDDEN = {
    "lfakit.data": ("lfakit.engine", "lfakit.experiments", "lfakit.runner", "lfakit.cli", "lfakit.report", "lfakit.models"),
    "lfakit.losses": ("lfakit.engine", "lfakit.experiments", "lfakit.runner", "lfakit.cli", "lfakit.report", "lfakit.data"),
    "lfakit.metrics": ("lfakit.engine", "lfakit.experiments", "lfakit.runner", "lfakit.cli", "lfakit.report", "lfakit.losses"),
    "lfakit.stats": ("lfakit.engine", "lfakit.experiments", "lfakit.runner", "lfakit.cli", "lfakit.report"),
    # the seed-level test's simulated calibration: the stats layer and nothing above it
    "lfakit.seedsim": ("lfakit.engine", "lfakit.experiments", "lfakit.runner", "lfakit.cli", "lfakit.report",
                       "lfakit.compare", "lfakit.record", "lfakit.losses", "lfakit.models", "lfakit.data"),
    "lfakit.params": ("lfakit.experiments", "lfakit.engine", "lfakit.runner", "lfakit.cli", "lfakit.losses", "lfakit.models"),
    "lfakit.schemas": ("lfakit.experiments", "lfakit.engine", "lfakit.runner", "lfakit.cli", "lfakit.losses", "lfakit.models"),
    "lfakit.catalog": ("lfakit.experiments", "lfakit.engine", "lfakit.runner", "lfakit.cli", "lfakit.losses", "lfakit.models"),
    "lfakit.registry": ("lfakit.",),  # only lfakit.errors, allowed below
    "lfakit.runtime": ("lfakit.engine", "lfakit.experiments", "lfakit.runner", "lfakit.cli", "lfakit.models", "lfakit.data"),
    "lfakit.fitconfig": ("lfakit.engine", "lfakit.experiments", "lfakit.runner", "lfakit.cli"),
    "lfakit.models": ("lfakit.engine", "lfakit.experiments", "lfakit.runner", "lfakit.cli", "lfakit.report"),
    "lfakit.engine": ("lfakit.experiments", "lfakit.runner", "lfakit.cli", "lfakit.report", "lfakit.record"),
    "lfakit.distributed": ("lfakit.experiments", "lfakit.runner", "lfakit.cli", "lfakit.report", "lfakit.record"),
    "lfakit.report": ("lfakit.engine", "lfakit.experiments", "lfakit.runner", "lfakit.cli"),
    "lfakit.record": ("lfakit.engine", "lfakit.experiments", "lfakit.runner", "lfakit.cli"),
    # membership attacks work from saved logits and losses: the metrics/stats layer
    "lfakit.attacks": ("lfakit.engine", "lfakit.experiments", "lfakit.runner", "lfakit.cli", "lfakit.report",
                       "lfakit.losses", "lfakit.models", "lfakit.data", "lfakit.sweep"),
    # sweeps run the runner's CLI in child processes; nothing below them knows of them
    "lfakit.runner": ("lfakit.sweep", "lfakit.cli"),
    "lfakit.sweep": ("lfakit.cli", "lfakit.experiments", "lfakit.engine"),
    # comparisons read run records only; the report site reads run folders and comparisons
    "lfakit.compare": ("lfakit.cli", "lfakit.experiments", "lfakit.engine", "lfakit.models", "lfakit.losses",
                       "lfakit.data", "lfakit.site"),
    "lfakit.site": ("lfakit.cli", "lfakit.experiments", "lfakit.engine", "lfakit.models", "lfakit.losses",
                    "lfakit.data"),
}
ALWAYS_ALLOWED = ("lfakit.errors",)
# torch-free layers: `lfakit list` and validation never import torch
NO_TORCH = ("lfakit.params", "lfakit.schemas", "lfakit.catalog", "lfakit.registry", "lfakit.fitconfig", "lfakit.errors",
            "lfakit.attacks", "lfakit.metrics.privacy")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every import in ``path``."""
    mod = _module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = [a.name for a in node.names]
            out.append((node.lineno, base, names))
            out += [(node.lineno, f"{base}.{n}", []) for n in names]  # `from lfakit import engine`
    return out


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix if prefix.endswith(".") else prefix + ".")


def violations() -> list[str]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        mod = _module_name(path)
        rules = [r for layer, r in FORBIDDEN.items() if _matches(mod, layer)]
        for line, target, names in imports(path):
            if _matches(target, "lfakit") and any(_matches(target, a) for a in ALWAYS_ALLOWED):
                continue
            for forbidden in (p for r in rules for p in r):
                if _matches(target, forbidden.rstrip(".")) and not _matches(target, mod):
                    bad.append(f"{path.relative_to(PKG.parent)}:{line}: {mod} imports {target}")
            if any(_matches(mod, layer) for layer in NO_TORCH) and _matches(target, "torch"):
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: {mod} imports torch")
            if mod == "lfakit.report" and _matches(target, "lfakit.metrics") | _matches(target, "lfakit.stats"):
                bad += [f"{path.relative_to(PKG.parent)}:{line}: report imports private {target}.{n}"
                        for n in names if n.startswith("_")]
    return bad


def test_no_import_runs_back_up_the_layers():
    assert violations() == []


def test_the_walker_sees_function_level_and_relative_imports(tmp_path):
    """The check itself can fail: a planted upward import is reported."""
    fake = tmp_path / "lfakit"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    (fake / "data" / "bad.py").write_text("def f():\n    from lfakit import engine\n    from ..runner import run\n")
    (fake / "params.py").write_text("import lfakit.experiments.chestxray_zlpr\n")
    (fake / "report.py").write_text("from lfakit.metrics.classification import _secret, per_class_auroc\n")
    globals()["PKG"] = fake
    try:
        found = "\n".join(violations())
    finally:
        globals()["PKG"] = Path(__file__).resolve().parents[1] / "lfakit"
    assert "lfakit.data.bad imports lfakit.engine" in found
    assert "lfakit.data.bad imports lfakit.runner" in found
    assert "lfakit.params imports lfakit.experiments" in found
    assert "report imports private lfakit.metrics.classification._secret" in found
    assert "per_class_auroc" not in found


@pytest.mark.parametrize("layer", ["lfakit.data", "lfakit.losses", "lfakit.metrics", "lfakit.stats", "lfakit.params"])
def test_every_low_layer_has_rules(layer):
    assert layer in FORBIDDEN


def test_every_loss_class_is_in_the_one_registry():
    """The catalog is the one list of losses: each concrete loss class of the loss modules is
    registered there, under a name whose task matches its module, and builds by that name."""
    import inspect

    import lfakit.losses as L
    from lfakit.catalog import LOSSES
    from lfakit.losses import iqa, multiclass, multilabel
    from lfakit.losses._base import Loss

    registered = {LOSSES.get(n): n for n in LOSSES}
    for module, task in ((multilabel, "multilabel"), (multiclass, "multiclass"), (iqa, "iqa")):
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or name.startswith("_") or not issubclass(cls, Loss):
                continue
            assert cls in registered, f"{module.__name__}.{name} is not in lfakit.catalog.LOSSES"
            assert LOSSES.meta(registered[cls])["task"] == task
            assert L.build(registered[cls]).registry_name == registered[cls]
