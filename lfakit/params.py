"""Load and validate notebook parameters: one schema per experiment, strict, with clear errors.

Each experiment's schema (``lfakit/schemas/<experiment>.py``) holds every parameter's type,
default, help, range and choices in one :class:`Spec`. The notebook's ``parameters`` cell is
generated from it (:func:`parameters_cell`), the smoke profile is checked against it, and
validation reads values the way a user means them (``1e-3`` arrives from PyYAML as the *string*
"1e-3"). This module is the bottom layer: it imports no experiment and no torch.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from lfakit.errors import ParameterError, close_matches


@dataclass(frozen=True)
class Spec:
    """One parameter: its type, default, help text and what it may hold.

    This is the one source of these facts: the notebook's ``parameters`` cell is generated
    from the specs (:func:`parameters_cell`; a test keeps the committed cell equal), the
    smoke profile is checked against the defaults, and ``lfakit list`` prints them.
    ``internal`` marks parameters the runner sets (``run_dir``, ``resume``)."""

    type: type  # int, float, str, bool, list or dict
    default: Any = None
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None  # allowed values (for str) or allowed items (for list)
    choices_fn: Callable[[], list] | None = field(default=None, compare=False)  # lazy choices
    nonempty: bool = False
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)
    internal: bool = False
    unique: bool = True  # a list may not hold an item twice (False: e.g. [height, width] = [64, 64])

    def allowed(self) -> list | None:
        if self.choices_fn is not None:
            return list(self.choices_fn())
        return list(self.choices) if self.choices is not None else None


def loss_choices(task: str | None = None) -> Callable[[], list[str]]:
    """Lazy choices for a ``losses`` / ``baseline`` parameter: the loss registry's names (of
    one task). Read from :mod:`lfakit.catalog`, so validation never imports torch."""

    def names() -> list[str]:
        from lfakit.catalog import loss_names

        return loss_names(task)

    return names


def model_choices(task: str | None = None) -> list[str]:
    """Registered models offered for ``task`` (a model's ``tasks`` in the registry; absent: every
    task). Without a task, the models of the classification tasks (multilabel, multiclass): what
    the classification experiments, which name no task, have always been offered (it leaves out
    the IQA model ``swin_b_iqa``). An IQA schema passes ``choices_fn=lambda: model_choices("iqa")``."""
    from lfakit.catalog import MODELS

    want = (task,) if task else ("multilabel", "multiclass")
    return [n for n in MODELS if any(t in MODELS.meta(n).get("tasks", want) for t in want)]


def model_help(extra: str = "", task: str | None = None) -> str:
    """Help text of a ``model`` parameter: the models offered for ``task`` (and ``extra``)."""
    return " | ".join(model_choices(task)) + (f" ({extra})" if extra else "")


def check_model(model: str, pretrained: bool, side: int, side_name: str = "image_size") -> str | None:
    """Cross-parameter check of a model choice against the registry's facts: pretrained weights
    exist, and the input side is at least the network's smallest."""
    from lfakit.catalog import MODELS

    meta = MODELS.meta(model)
    if pretrained and not meta["pretrained_weights"]:
        return f"{model} has no pretrained weights; use pretrained=false"
    if side < meta["min_side"]:
        return f"{model} needs inputs of at least {meta['min_side']} px; set {side_name} >= {meta['min_side']} (the input is {side} px)"
    return None


def check_seeds(value: list) -> str | None:
    """A ``seeds`` list: distinct integers in [0, 2^32)."""
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**32:
            return f"every seed must be an integer in [0, 2^32), got {v!r}"
    return None


def min_resamples(n_tests: int, alpha: float) -> int:
    """The fewest bootstrap resamples B for which the smallest Holm-corrected p-value of
    ``n_tests`` bootstrap p-values, ``n_tests / (B + 1)``, can fall below ``alpha``."""
    b = max(1, math.floor(n_tests / alpha) - 1)
    while n_tests / (b + 1) >= alpha:
        b += 1
    return b


def check_bootstrap_resolution(n_tests: int, n_boot: int, alpha: float, option: str = "n_boot") -> str | None:
    """A message where ``n_boot`` resamples are too few for any of ``n_tests`` Holm-corrected
    bootstrap tests to reach ``alpha``: a bootstrap p-value is at least ``1 / (n_boot + 1)`` and
    Holm multiplies the smallest of the family by ``n_tests``, so every difference would be a tie."""
    if n_tests < 1 or n_tests / (n_boot + 1) < alpha:
        return None
    return (f"{option}={n_boot} is too few resamples for {n_tests} bootstrap-tested comparison(s) at alpha={alpha}: a "
            f"bootstrap p-value is at least 1/({n_boot} + 1) = {1 / (n_boot + 1):.4f}, which Holm's correction multiplies "
            f"by {n_tests} to {n_tests / (n_boot + 1):.4f} >= alpha, so every difference would be a tie. Use "
            f"{option}={min_resamples(n_tests, alpha)} or more (1000 is the default)")


def check_loss_kwargs(value: dict) -> str | None:
    """``loss_kwargs`` maps registered loss names to argument mappings, each argument one the
    loss takes with a value it accepts. Checked against a static table of the losses'
    arguments (:mod:`lfakit.schemas._loss_args`, kept equal to the classes by a test), so a bad
    argument stops validation without importing torch; the experiments' preflight also builds
    every loss before any run folder is made."""
    from lfakit.catalog import loss_names
    from lfakit.schemas._loss_args import LOSS_ARGS

    for name, kwargs in value.items():
        if name not in loss_names():
            return f"loss_kwargs names unknown loss {name!r}.{close_matches(name, loss_names())}"
        if not isinstance(kwargs, dict):
            return f"loss_kwargs[{name!r}] must be a mapping of argument -> value, got {kwargs!r}"
        args = LOSS_ARGS.get(name)
        if args is None:  # a loss registered without a table entry: its preflight build checks it
            continue
        for arg, v in kwargs.items():
            if arg not in args:
                return (f"loss {name!r} has no argument {arg!r}.{close_matches(arg, args)} "
                        f"Its arguments are: {', '.join(args) or '(none)'}.")
            msg = args[arg].problem(arg, v)
            if msg:
                return f"loss {name!r}: {msg}; fix loss_kwargs[{name!r}][{arg!r}]"
    return None


def check_loss_kwargs_trained(p: dict, also: tuple[str, ...] = ()) -> str | None:
    """Cross-parameter check: ``loss_kwargs`` gives arguments only for losses the run builds
    (``losses``, and ``also``: a baseline the comparison reads), not ones it would ignore."""
    used = [*p["losses"], *also]
    idle = [n for n in p["loss_kwargs"] if n not in used]
    if not idle:
        return None
    names = ", ".join(repr(n) for n in idle)
    return (f"loss_kwargs gives arguments for {names}, which this run does not train (losses: {p['losses']}); "
            f"add {'it' if len(idle) == 1 else 'them'} to losses or remove {'it' if len(idle) == 1 else 'them'} "
            "from loss_kwargs")


def check_dataset_inputs(P: dict) -> None:
    """What a run of a ``dataset`` experiment (cifar_fece, membership_inference) needs beyond its
    parameters, checked without torch before the experiment's code is imported (``lfakit run``
    calls it first; the experiment's preflight too): the device, and with ``dataset=cifar10``
    every batch's files, keys, dtypes, shapes and labels and every class present
    (:func:`lfakit.data.cifar.check_cifar10`)."""
    check_device(P["device"])
    if P["dataset"] == "cifar10":
        from lfakit.data.cifar import check_cifar10

        check_cifar10(P["data_dir"])


def check_device(device: str) -> None:
    """``device=cuda`` / ``mps`` on a machine that surely has none: ``ParameterError`` at once,
    without importing torch (no NVIDIA or ROCm driver, ``CUDA_VISIBLE_DEVICES`` empty; MPS off
    macOS). Where one may be present, the experiment's preflight asks torch."""
    import os
    import sys

    if device == "cuda":
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
        driver = any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd"))
        if hidden or (sys.platform.startswith("linux") and not driver) or sys.platform == "darwin":
            why = "CUDA_VISIBLE_DEVICES hides every GPU" if hidden else "no NVIDIA (or ROCm) driver is loaded"
            raise ParameterError(f"device='cuda' was asked for but no CUDA GPU is visible ({why}); "
                                 "use device='auto' or 'cpu'")
    if device == "mps" and sys.platform != "darwin":
        raise ParameterError("device='mps' was asked for but MPS is not available (it is Apple's GPU backend, on "
                             "macOS only); use device='auto' or 'cpu'")


def run_params(experiment: str, *, seed: int = 42, num_threads: int = 1, device: str = "auto") -> dict[str, Spec]:
    """The parameters every experiment notebook has; ``run_dir`` and ``resume`` are set by the runner."""
    return {
        "device": Spec(str, device, "auto | cpu | cuda | mps", choices=("auto", "cpu", "cuda", "mps")),
        "num_threads": Spec(int, num_threads, "torch CPU threads (fixed so CPU runs repeat exactly; 0: torch's default)",
                            min=0, max=1024),
        "seed": Spec(int, seed, "seed for data splits, initial weights and shuffling", min=0, max=2**32 - 1),
        "run_dir": Spec(str, "", f"run folder (set by `lfakit run`); empty: a new results/{experiment}/<time>-interactive",
                        internal=True),
        "resume": Spec(bool, False, "continue the run in run_dir from its checkpoints", internal=True),
    }


def schema_module(experiment: str):
    """The parameter module ``lfakit.schemas.<experiment>`` (``SCHEMA``, ``check_params``).

    Schema modules import nothing heavy; the experiment's code (which imports torch) is not
    imported here. Discovery of experiments lives in :mod:`lfakit.catalog`."""
    from lfakit.catalog import EXPERIMENTS

    return EXPERIMENTS.entry(experiment).meta["schema"]()


def schema(experiment) -> dict[str, Spec]:
    """The parameter schema of ``experiment`` (a name, a schema module, or a schema dict)."""
    if isinstance(experiment, dict):
        return experiment
    mod = schema_module(experiment) if isinstance(experiment, str) else experiment
    return mod.SCHEMA


def defaults(experiment) -> dict[str, Any]:
    """Every parameter's default (deep copies: lists and dicts may be changed by the caller)."""
    import copy

    return {k: copy.deepcopy(s.default) for k, s in schema(experiment).items()}


TYPE_NAMES = {int: "int", float: "float", str: "str", bool: "bool", list: "list", dict: "dict"}


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def parameters_cell(experiment) -> str:
    """The source of the notebook's ``parameters`` cell, generated from the schema: one
    annotated literal per parameter with its help as the trailing comment (papermill's
    ``--help-notebook`` and ``lfakit list`` show both)."""
    return "\n".join(
        f"{name}: {TYPE_NAMES[s.type]} = {_literal(s.default)}  # {s.help}" for name, s in schema(experiment).items()
    )


def _coerce(name: str, value: Any, spec: Spec) -> Any:
    """Return ``value`` as ``spec.type`` where that is unambiguous, else raise ParameterError."""
    t = spec.type
    where = f"parameter {name!r}"
    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ParameterError(f"{where} must be true or false, got {value!r}")
    if t in (int, float):
        if isinstance(value, bool):
            raise ParameterError(f"{where} must be a number, got the boolean {value!r}")
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; so may a command line
            try:
                value = float(value) if t is float else int(value)
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    raise ParameterError(f"{where} must be a {t.__name__}, got the text {value!r}") from None
                if t is int and f.is_integer():
                    value = int(f)
                else:
                    raise ParameterError(f"{where} must be an integer, got {value!r}") from None
        if t is int:
            if isinstance(value, float):
                if not value.is_integer():
                    raise ParameterError(f"{where} must be an integer, got {value!r}")
                value = int(value)
            if not isinstance(value, int):
                raise ParameterError(f"{where} must be an integer, got {type(value).__name__} {value!r}")
        else:
            if not isinstance(value, (int, float)):
                raise ParameterError(f"{where} must be a number, got {type(value).__name__} {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ParameterError(f"{where} must be finite, got {value!r}")
        if spec.min is not None and value < spec.min:
            raise ParameterError(f"{where} must be >= {spec.min}, got {value!r}")
        if spec.max is not None and value > spec.max:
            raise ParameterError(f"{where} must be <= {spec.max}, got {value!r}")
        return value
    if t is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ParameterError(f"{where} must be text, got {type(value).__name__} {value!r}")
        return value
    if t is list:
        if isinstance(value, str):  # "a,b" or "[a, b]" from a command line
            if value.strip().startswith("["):
                parsed = yaml.safe_load(value)
            else:  # "0,1,2" or "focal, zlpr": each item read as YAML, like a -p value
                parsed = [yaml.safe_load(v) if v.strip() else "" for v in value.split(",")]
            value = [v.strip() if isinstance(v, str) else v for v in parsed]
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ParameterError(f"{where} must be a list, got {type(value).__name__} {value!r}")
        if spec.nonempty and not value:
            raise ParameterError(f"{where} must not be empty")
        if spec.unique and len(set(map(str, value))) != len(value):
            raise ParameterError(f"{where} lists an item twice: {value!r}")
        return value
    if t is dict:
        if value is None:
            return {}
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ParameterError(f"{where} must be a mapping, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported spec type {t!r}")  # pragma: no cover - schema bug


def validate(experiment: str, params: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Validate and normalise ``params`` against the experiment's schema.

    Unknown names, wrong types, out-of-range values and unknown choices raise ParameterError
    naming the parameter and, where one is close, the intended name. With ``partial=True``
    missing names are allowed (used for profile files and overrides before merging).
    """
    sch = schema(experiment)
    unknown = [k for k in params if k not in sch]
    if unknown:
        k = unknown[0]
        raise ParameterError(
            f"unknown parameter {k!r} for experiment {experiment!r}.{close_matches(k, sch)} "
            f"Run `lfakit list {experiment}` to see its parameters."
        )
    if not partial:
        missing = [k for k in sch if k not in params]
        if missing:
            raise ParameterError(f"missing parameter(s) for {experiment!r}: {', '.join(missing)}")
    out: dict[str, Any] = {}
    for name, value in params.items():
        spec = sch[name]
        v = _coerce(name, value, spec)
        allowed = spec.allowed()
        if allowed is not None:
            items = v if spec.type is list else [v]
            for item in items:
                if item not in allowed:
                    raise ParameterError(
                        f"parameter {name!r}: {item!r} is not allowed.{close_matches(item, allowed)} "
                        f"Choices: {', '.join(map(str, allowed))}."
                    )
        if spec.check is not None:
            msg = spec.check(v)
            if msg:
                raise ParameterError(f"parameter {name!r}: {msg}")
        out[name] = v
    cross = getattr(schema_module(experiment), "check_params", None)
    if not partial and cross is not None:
        msg = cross(out)
        if msg:
            raise ParameterError(msg)
    return out


_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def validate_notebook(experiment: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Validate the parameters a notebook holds in its globals (call it right after them).

    Catches what papermill only warns about: an injected name the notebook does not know.
    Returns the validated parameters as a dict (the notebook uses ``P["lr"]`` etc.).
    """
    import types

    sch = schema(experiment)
    user = {
        k: v
        for k, v in namespace.items()
        if not k.startswith("_")
        and k not in _IPYTHON_NAMES
        and not isinstance(v, (types.ModuleType, types.FunctionType, type))
    }
    unknown = {k: v for k, v in user.items() if k not in sch}
    if unknown:
        validate(experiment, unknown, partial=True)  # raises with the close match
    return validate(experiment, {k: user[k] for k in sch if k in user})


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML parameter file; it must hold a mapping of names to values."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParameterError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ParameterError(f"{path} must hold a mapping of parameter names to values")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``name=value`` command-line override (the value read as YAML)."""
    if "=" not in text:
        raise ParameterError(f"override {text!r} must look like name=value (e.g. -p epochs=2)")
    name, raw = text.split("=", 1)
    name = name.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ParameterError(f"override {text!r}: cannot read the value ({e})") from None
    return name, value


def literal_default(source: str) -> Any:
    """The Python value of a default as papermill's inspector reports it (source text)."""
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return source
