"""Parameters of the LFA CIFAR-10 experiment: BCE / focal / ASL / exp_ce / F-ECE one-vs-rest,
balanced and long-tailed."""

from __future__ import annotations

import math

from lfakit.catalog import DATASETS
from lfakit.fitconfig import fit_params
from lfakit.params import Spec, check_dataset_inputs, check_loss_kwargs, check_loss_kwargs_trained, check_model, check_seeds, loss_choices, model_choices, model_help, run_params

EXPERIMENT = "cifar_fece"
VAL_METRICS = ("auroc",)
_multilabel = loss_choices("multilabel")


def _dataset_choices() -> list[str]:
    return DATASETS.names(task="multiclass")


def _check_ratios(value: list) -> str | None:
    for r in value:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or not 1 <= r <= 1000:
            return f"every imbalance ratio must be a number >= 1 (1: balanced) and at most 1000, got {r!r}"
    return None


def _check_folds(value: int) -> str | None:
    return None if value == 0 or value >= 2 else "use 0 (one validation split) or k >= 2 folds"


def _check_image_size(value: int) -> str | None:
    return None if value == 0 or value >= 8 else f"use 0 (the native 8 or 32 px) or a side of at least 8 px, got {value}"


SCHEMA: dict[str, Spec] = {
    "dataset": Spec(str, "digits", "digits (scikit-learn's bundled 8x8 digits, embedded) | cifar10", choices_fn=_dataset_choices),
    "data_dir": Spec(str, "", "cifar10 only: folder holding cifar-10-batches-py/ (or the batch files themselves)"),
    "imbalance_ratios": Spec(list, [1, 10], "long-tail ratios rho (head/tail images) to run; 1 is balanced", nonempty=True, check=_check_ratios),
    "val_fraction": Spec(float, 0.2, "share of each class's training images held out for validation (thresholds)", min=0.01, max=0.5),
    "folds": Spec(int, 0, "k-fold cross-validation of the training set (0: one stratified validation split)", min=0, max=20, check=_check_folds),
    "digits_test_per_class": Spec(int, 50, "digits only: balanced test images per class (a fixed draw)", min=1, max=172),
    "losses": Spec(list, ["bce", "focal", "asl", "exp_ce", "f_ece"], "losses to train, by registry name", choices_fn=_multilabel, nonempty=True),
    "baseline": Spec(str, "bce", "loss every other loss is compared against (DeLong per class)", choices_fn=_multilabel),
    "loss_kwargs": Spec(dict, {}, 'per-loss arguments, e.g. {"f_ece": {"gamma": 2.0}}; empty: registry defaults', check=check_loss_kwargs),
    "hard_classes": Spec(int, 3, "classes flagged hard: lowest mean recall and lowest mean AUC over the losses", min=0, max=10),
    "model": Spec(str, "tiny_cnn", model_help("sigmoid head, one logit per class"), choices_fn=model_choices),
    "pretrained": Spec(bool, False, "ImageNet weights (downloaded once into torchvision's cache)"),
    "image_size": Spec(int, 0, "resize inputs to this side inside the model (0: the native 8 or 32 px, else at least 8)", min=0, max=1024,
                       check=_check_image_size),
    "augment": Spec(bool, False, "random flips and shifts on the training split (keep off for digits)"),
    "seeds": Spec(list, [], "training seeds, one model per loss, ratio, fold and seed (initial weights, data order; the "
                  "splits keep seed); two or more: the comparison tests per-seed deltas; empty: seed only", check=check_seeds),
    **fit_params(VAL_METRICS, epochs=10, batch_size=64, optimizer="adam", lr=0.003, weight_decay=0.0001,
                 scheduler="cosine", monitor="val_auroc", precision="float64"),
    **run_params(EXPERIMENT, seed=42, num_threads=1),
}


def check_params(p: dict) -> str | None:
    """Checks across parameters, run before any work starts."""
    # one loss alone (a sweep point) compares nothing, so its baseline may be another loss
    if len(p["losses"]) > 1 and p["baseline"] not in p["losses"]:
        return f"baseline {p['baseline']!r} is not among the trained losses {p['losses']}; add it to losses or pick another baseline"
    # the baseline's arguments may stay when a sweep point trains one other loss
    msg = check_loss_kwargs_trained(p, also=(p["baseline"],))
    if msg:
        return msg
    if p["dataset"] == "digits" and p["data_dir"]:
        return f"data_dir={p['data_dir']!r} is set but dataset is 'digits' (embedded); set dataset=cifar10 or leave data_dir empty"
    side = p["image_size"] or (8 if p["dataset"] == "digits" else 32)  # 0: the native side
    return check_model(p["model"], p["pretrained"], side)


#: the device and, with ``dataset=cifar10``, every batch, checked without torch before the
#: experiment's code is imported (:func:`lfakit.params.check_dataset_inputs`)
check_inputs = check_dataset_inputs
