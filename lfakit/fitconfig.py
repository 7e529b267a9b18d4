"""The engine's settings: one :class:`FitConfig`, built from an experiment's parameters in one
place (:meth:`FitConfig.from_params`), and the engine part of every experiment's parameter
schema derived from its fields (:func:`fit_params`).

Torch-free, so that parameter validation and ``lfakit list`` stay fast; the engine imports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from lfakit.errors import ParameterError
from lfakit.params import Spec

PRECISIONS = ("float32", "float64")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("none", "cosine", "step", "plateau")


def _p(default, spec: Spec | None = None):
    """A FitConfig field; ``spec`` (type, help, range) makes it a notebook parameter."""
    return field(default=default, metadata={"spec": spec} if spec else {})


@dataclass
class FitConfig:
    """Training settings (the engine's part of an experiment's parameters)."""

    epochs: int = _p(10, Spec(int, help="training epochs per loss", min=1, max=10_000))
    batch_size: int = _p(32, Spec(int, help="training batch size", min=1, max=65_536))
    optimizer: str = _p("adamw", Spec(str, help="adamw | adam | sgd", choices=OPTIMIZERS))
    lr: float = _p(1e-3, Spec(float, help="learning rate", min=1e-12, max=10.0))
    weight_decay: float = _p(0.0, Spec(float, help="weight decay", min=0.0, max=1.0))
    momentum: float = _p(0.9)  # sgd only
    scheduler: str = _p("none", Spec(str, help="none | cosine | step | plateau", choices=SCHEDULERS))
    step_size: int = _p(10)  # step scheduler: epochs between decays
    step_gamma: float = _p(0.1)
    # the head (every parameter outside the submodule ``backbone_module``) trains at lr x
    # head_lr_mult in a second parameter group; 1: one group, as before. An experiment exposes it
    # as a parameter of its own schema (iqa_losses) and names its model's backbone.
    head_lr_mult: float = _p(1.0)
    backbone_module: str = _p("backbone")
    grad_clip: float = _p(0.0, Spec(float, help="max gradient norm (0: off)", min=0.0, max=1e6))
    early_stopping_patience: int = _p(0, Spec(int, help="stop after this many epochs without improvement (0: off)",
                                              min=0, max=10_000))
    # val_loss (min) or val_<metric> (max); the experiment's schema narrows the choices
    monitor: str = _p("val_loss", Spec(str, help="validation quantity that picks the best epoch"))
    amp: bool = _p(True, Spec(bool, help="mixed precision (CUDA, float32 only); channels_last is always used on CUDA"))
    channels_last: bool = _p(True)  # CUDA only
    device: str = _p("auto")  # a run parameter (lfakit.params.run_params)
    num_workers: int = _p(0, Spec(int, help="DataLoader worker processes", min=0, max=64))
    seed: int = _p(0)  # a run parameter
    progress: bool = _p(True)
    eval_batch_size: int = _p(0)  # 0 = 2 * batch_size
    # batch (set-wise / pairwise) losses: drop the last incomplete training batch, which may hold
    # a single sample; and skip the validation loss, whose value a fixed batching would decide
    # (the experiment then monitors one of its validation metrics)
    drop_last: bool = _p(False)
    val_loss: bool = _p(True)
    precision: str = _p("float32", Spec(str, help="float64 | float32: float64 keeps CPU results identical across "
                                        "AVX2 / AVX-512 (docs/reproducibility.md); float32 for GPUs", choices=PRECISIONS))

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            raise ParameterError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.precision not in PRECISIONS:
            raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not self.val_loss and self.monitor == "val_loss":
            raise ParameterError("monitor=val_loss needs the validation loss; with val_loss off monitor a validation metric")
        if not (self.head_lr_mult > 0 and self.head_lr_mult < float("inf")):
            raise ParameterError(f"head_lr_mult must be a positive number, got {self.head_lr_mult!r}")
        if not self.monitor.startswith("val_"):
            raise ParameterError(f"monitor must name a validation quantity (val_loss, val_auroc...), got {self.monitor!r}")

    @classmethod
    def from_params(cls, P: dict[str, Any], **overrides) -> "FitConfig":
        """The config of an experiment's validated parameters: every field named in ``P``."""
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in P.items() if k in names}, **overrides})

    @property
    def dtype(self):
        from lfakit.runtime import dtype_of

        return dtype_of(self.precision)

    @property
    def monitor_mode(self) -> str:
        return "min" if self.monitor.endswith("loss") else "max"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_params(val_metrics: tuple[str, ...] = (), **defaults) -> dict[str, Spec]:
    """The engine's parameters for an experiment schema, derived from :class:`FitConfig`'s fields:
    its type, help and range, with the experiment's own ``defaults``. ``val_metrics`` names the
    validation metrics the experiment computes; ``monitor`` may name ``val_loss`` or any of them."""
    out = {}
    unknown = set(defaults) - {f.name for f in fields(FitConfig) if f.metadata.get("spec")}
    if unknown:
        raise ValueError(f"fit_params: no engine parameter {sorted(unknown)}")  # schema bug
    for f in fields(FitConfig):
        spec = f.metadata.get("spec")
        if spec is None:
            continue
        kw = {"default": defaults.get(f.name, f.default)}
        if f.name == "monitor":
            choices = ("val_loss", *(f"val_{m}" for m in val_metrics))
            kw["choices"] = choices
            kw["help"] = f"validation quantity that picks the best epoch: {' | '.join(choices)}"
        out[f.name] = Spec(**{**_spec_kwargs(spec), **kw})
    return out


def _spec_kwargs(spec: Spec) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in fields(Spec)}
