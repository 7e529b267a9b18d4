"""What the kit can build by name: losses, models, data sets and experiments.

Every name lives here once, next to its metadata; parameter choices (``losses``, ``model``,
``dataset``) are read from these registries, and the code that builds a thing looks it up
here. Targets are lazy ``"module:attribute"`` paths, so importing this module costs nothing:
``lfakit list`` and parameter validation never import torch.
"""

from __future__ import annotations

from lfakit.registry import Registry

LOSS_TASKS = ("multilabel", "multiclass", "iqa")

LOSS_ENTRY_POINTS = "lfakit.losses"  # the entry-point group of losses in installed packages


def _discover_losses(reg: Registry) -> None:
    discover_loss_plugins(reg)


LOSSES = Registry("loss", discover=_discover_losses)  # the library's losses, then the plugins' on first use
for _name, _target, _task in [
    ("bce", "multilabel:BCELoss", "multilabel"),
    ("focal", "multilabel:FocalLoss", "multilabel"),
    ("asl", "multilabel:AsymmetricLoss", "multilabel"),
    ("exp_ce", "multilabel:ExpCELoss", "multilabel"),
    ("f_ece", "multilabel:FocalExpCELoss", "multilabel"),
    ("zlpr", "multilabel:ZLPRLoss", "multilabel"),
    ("soft_zlpr", "multilabel:SoftZLPRLoss", "multilabel"),
    ("fzlpr", "multilabel:FocalZLPRLoss", "multilabel"),
    ("ce", "multiclass:CrossEntropyLoss", "multiclass"),
    ("focal_ce", "multiclass:FocalCELoss", "multiclass"),
    ("mae", "multiclass:MAELoss", "multiclass"),
    ("gce", "multiclass:GCELoss", "multiclass"),
    ("rce", "multiclass:RCELoss", "multiclass"),
    ("sce", "multiclass:SCELoss", "multiclass"),
    ("nce", "multiclass:NCELoss", "multiclass"),
    ("nce_rce", "multiclass:NCERCELoss", "multiclass"),
    ("phuber_ce", "multiclass:PHuberCELoss", "multiclass"),
    ("logit_clip", "multiclass:LogitClipLoss", "multiclass"),
    ("logit_norm", "multiclass:LogitNormLoss", "multiclass"),
    ("flooding", "multiclass:FloodingLoss", "multiclass"),
    ("l1", "iqa:L1Loss", "iqa"),
    ("l2", "iqa:L2Loss", "iqa"),
    ("plcc", "iqa:PLCCLoss", "iqa"),
    ("srcc", "iqa:SRCCLoss", "iqa"),
    ("norm_in_norm", "iqa:NormInNormLoss", "iqa"),
    ("rank", "iqa:RankLoss", "iqa"),
    ("rank_mos", "iqa:MOSRankLoss", "iqa"),
    ("fidelity", "iqa:FidelityLoss", "iqa"),
]:
    LOSSES.add(_name, f"lfakit.losses.{_target}", task=_task)

# What a loss's value and output mean, for tables that put several losses side by side:
# ``mean_over`` is what reduction="mean" averages (elements of the B x C matrix, or samples of a
# per-sample set loss), ``output`` whether the sigmoid of the logit reads as a label probability
# ("probability") or the logit is an uncalibrated score whose own decision rule is z > 0 ("score").
for _name in ("bce", "focal", "asl", "exp_ce", "f_ece"):
    LOSSES.meta(_name).update(mean_over="elements", output="probability")
for _name in ("zlpr", "soft_zlpr", "fzlpr"):
    LOSSES.meta(_name).update(mean_over="samples", output="score")



def user_loss_meta(name: str, cls, task: str | None = None, *, mean_over: str | None = None,
                   output: str | None = None, args: dict | None = None, source: str = "register") -> dict:
    """Check a user's loss class and return its registry metadata (and put its argument table
    into :data:`lfakit.schemas._loss_args.LOSS_ARGS`, which parameter validation reads).

    ``task`` (else the class's ``task`` attribute) is one of :data:`LOSS_TASKS`; ``mean_over``
    (``elements`` | ``samples``) and ``output`` (``probability`` | ``score``) default to the
    class's attributes of those names, if any. ``args``: the argument table (name -> ``Arg``);
    by default it is read from the class's keyword arguments and their defaults
    (:func:`lfakit.schemas._loss_args.args_from_defaults`). Nothing here imports torch."""
    import inspect
    import re

    from lfakit.errors import ParameterError
    from lfakit.schemas._loss_args import LOSS_ARGS, args_from_defaults

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
        raise ParameterError(f"a loss name is a word of letters, digits, '_', '-' or '.', starting with a letter; got {name!r}")
    if not inspect.isclass(cls):
        raise ParameterError(f"loss {name!r}: register a class (an nn.Module subclass taking (logits, targets)), "
                             f"got {type(cls).__name__} {cls!r}")
    task = task if task is not None else getattr(cls, "task", None)
    if task not in LOSS_TASKS:
        raise ParameterError(f"loss {name!r}: task must be one of {', '.join(LOSS_TASKS)} "
                             f"(pass task=... or give the class a task attribute), got {task!r}")
    mean_over = mean_over if mean_over is not None else getattr(cls, "mean_over", None)
    output = output if output is not None else getattr(cls, "output", None)
    if mean_over not in (None, "elements", "samples"):
        raise ParameterError(f"loss {name!r}: mean_over must be 'elements' or 'samples', got {mean_over!r}")
    if output not in (None, "probability", "score"):
        raise ParameterError(f"loss {name!r}: output must be 'probability' or 'score', got {output!r}")
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    defaults = {p.name: (None if p.default is p.empty else p.default)
                for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    required = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if required:
        raise ParameterError(f"loss {name!r}: every argument of {cls.__name__} needs a default (the kit builds a "
                             f"loss by name with no arguments); {', '.join(required)} has none")
    if args is None:
        args = args_from_defaults(defaults)
    unknown = [a for a in args if a not in defaults]
    if unknown:
        raise ParameterError(f"loss {name!r}: args names {unknown[0]!r}, which {cls.__name__} does not take; "
                             f"its arguments are: {', '.join(defaults) or '(none)'}")
    LOSS_ARGS[name] = dict(args)
    meta = {"task": task, "user": True, "source": source}
    if mean_over:
        meta["mean_over"] = mean_over
    if output:
        meta["output"] = output
    return meta


def discover_loss_plugins(reg: Registry) -> None:
    """Add the losses of installed packages: every entry point of the group ``lfakit.losses``
    (``name = "package.module:LossClass"``; the class's ``task`` attribute gives its task).

    Called once per process on the first lookup of a loss name (parameter validation, a
    ``lfakit run`` worker's preflight, ``lfakit.losses.build``), so a sweep's or a Dask/Slurm
    worker's processes find the same names. Loading an entry point imports its package (and so
    whatever it imports, torch usually). A name the library already has, or a package that
    fails to import, is skipped with a warning that says why; it does not stop other runs."""
    import warnings
    from importlib.metadata import entry_points

    for ep in entry_points(group=LOSS_ENTRY_POINTS):
        where = f"entry point {ep.name} = {ep.value}" + (f" of {ep.dist.name}" if getattr(ep, "dist", None) else "")
        if ep.name in reg._entries:
            warnings.warn(f"lfakit: {where} is ignored: the name {ep.name!r} is already a registered loss", stacklevel=2)
            continue
        try:
            cls = ep.load()
            meta = user_loss_meta(ep.name, cls, source=f"entry point {ep.value}")
        except Exception as exc:  # a broken plugin must not stop the kit
            warnings.warn(f"lfakit: {where} is skipped: {type(exc).__name__}: {exc}", stacklevel=2)
            continue
        reg.add(ep.name, cls, **meta)


MODELS = Registry("model")
# tiny CPU models take the data's channels; ImageNet backbones take 3 (grayscale is replicated)
# min_side: the smallest input side the network takes (three stride-2 stages; five for the backbones)
# head: the torchvision attribute replaced by a new Linear; None marks a kit model (lfakit.models),
#   built as cls(num_classes, in_chans=..., **options) and, if it has pretrained_weights, loading
#   them itself (cls.load_pretrained)
# options: the keyword options build_model passes on (others are refused); tasks: the experiment
#   tasks a model is offered for (params.model_choices; absent: every task)
_CLASSIFICATION = ("multilabel", "multiclass")
MODELS.add("tiny_cnn", "lfakit.models:TinyCNN", channels=1, pretrained_weights=None, head=None, min_side=8,
           options=("dropout",), tasks=LOSS_TASKS)
# A small no-reference IQA model: BRISQUE-style image statistics and an MLP (the IQA smoke profile's)
MODELS.add("nss_mlp", "lfakit.models:NSSMLP", channels=3, pretrained_weights=None, head=None, min_side=8,
           options=("dropout",), tasks=("iqa",))
MODELS.add("densenet121", "torchvision.models:densenet121", channels=3, pretrained_weights="DenseNet121_Weights",
           head="classifier", min_side=32, tasks=_CLASSIFICATION)
MODELS.add("resnet18", "torchvision.models:resnet18", channels=3, pretrained_weights="ResNet18_Weights", head="fc", min_side=32,
           tasks=_CLASSIFICATION)
MODELS.add("resnet50", "torchvision.models:resnet50", channels=3, pretrained_weights="ResNet50_Weights", head="fc", min_side=32,
           tasks=_CLASSIFICATION)
# The study's IQA model, a kit model: torchvision Swin-B (ImageNet weights into the backbone only),
# four-stage features, attention-fusion head. torchvision's Swin runs on any side >= 4 px (patch
# merging and window attention pad), but below 32 px (its total stride) the deeper stages see only
# padding; the study feeds 224 x 224 patches.
MODELS.add("swin_b_iqa", "lfakit.models:SwinMultiScaleIQA", channels=3, pretrained_weights="Swin_B_Weights", head=None,
           min_side=32, options=("drop_path", "dropout"), tasks=("iqa",))
# Membership-inference targets (multi-class classifiers), kit models without pretrained weights.
# Their task tag is "privacy", not "multiclass": the classification experiments, which name no
# task (params.model_choices()), keep offering exactly the models above; a membership-inference
# schema offers these with model_choices("privacy").
MODELS.add("mlp", "lfakit.models:MLP", channels=1, pretrained_weights=None, head=None, min_side=1,
           options=("width", "depth", "dropout", "input_side"), tasks=("privacy",))
MODELS.add("resnet18_cifar", "lfakit.models:ResNet18CIFAR", channels=3, pretrained_weights=None, head=None, min_side=8,
           tasks=("privacy",))

DATASETS = Registry("dataset")
DATASETS.add("digits", "lfakit.data.cifar:load_source", task="multiclass", embedded=True,
             about="scikit-learn's bundled 8x8 digits (1,797 images), the embedded default")
DATASETS.add("cifar10", "lfakit.data.cifar:load_source", task="multiclass", embedded=False,
             about="CIFAR-10 python batches (cifar-10-batches-py/)")
DATASETS.add("nih_chestxray14", "lfakit.data.chestxray:load_chestxray", task="multilabel", embedded=False,
             about="NIH ChestX-ray14 (Data_Entry_2017.csv, split lists, images*/)")
DATASETS.add("koniq10k", "lfakit.data.koniq:load_koniq", task="iqa", embedded=False,
             about="KonIQ-10k (koniq10k_distributions_sets.csv or koniq10k_scores_and_distributions.csv, 512x384/ or 1024x768/)")
DATASETS.add("koniq10k_embedded", "lfakit.data.koniq_embedded:embedded_koniq_dir", task="iqa", embedded=True,
             about="graded distortions of scikit-image's sample photos with modelled opinion scores, written in the "
                   "KonIQ-10k layout, the embedded default")
DATASETS.add("synthetic_chestxray14", "lfakit.data.chestxray:load_chestxray", task="multilabel", embedded=True,
             about="a small data set generated in the NIH ChestX-ray14 layout, the embedded default")


def loss_names(task: str | None = None) -> list[str]:
    """Registered loss names, all or of one task (registration order)."""
    return LOSSES.names(task=task) if task else LOSSES.names()


def model_names() -> list[str]:
    return MODELS.names()


def _discover_experiments() -> Registry:
    """Every ``lfakit/schemas/<name>.py`` is an experiment; its code is ``lfakit.experiments.<name>``."""
    import importlib
    import pkgutil

    import lfakit.schemas as pkg

    reg = Registry("experiment")
    for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if m.name.startswith("_"):
            continue
        reg.add(m.name, f"lfakit.experiments.{m.name}",
                schema=lambda n=m.name: importlib.import_module(f"lfakit.schemas.{n}"))
    return reg


EXPERIMENTS = _discover_experiments()

# Notebooks in notebooks/ that are not experiments: they read the run records of others and
# train nothing (no schema, no profiles; `lfakit run` does not run them).
ANALYSIS_NOTEBOOKS = ("compare",)
