"""Parameters of the membership-inference comparison: ten training losses, each attacked by
threshold, shadow-model, LiRA and RMIA attacks with the same reference-model protocol."""

from __future__ import annotations

from lfakit.catalog import DATASETS
from lfakit.fitconfig import fit_params
from lfakit.params import (Spec, check_bootstrap_resolution, check_dataset_inputs, check_loss_kwargs, check_loss_kwargs_trained, check_model, loss_choices, model_choices,
                           model_help, run_params)

EXPERIMENT = "membership_inference"
VAL_METRICS = ()
_multiclass = loss_choices("multiclass")
ATTACKS = ("loss", "confidence", "shadow", "lira_online", "lira_offline", "rmia")  # as lfakit.attacks.ATTACKS
TEN_LOSSES = ["nce", "mae", "gce", "logit_clip", "sce", "focal_ce", "phuber_ce", "logit_norm", "flooding", "ce"]


def _dataset_choices() -> list[str]:
    return DATASETS.names(task="multiclass")


def _models() -> list[str]:
    return model_choices(task="privacy")


def _check_attacks(value: list) -> str | None:
    bad = [a for a in value if a not in ATTACKS]
    return f"unknown attack(s) {bad}; choose from {', '.join(ATTACKS)}" if bad else None


SCHEMA: dict[str, Spec] = {
    "dataset": Spec(str, "digits", "digits (scikit-learn's bundled 8x8 digits, embedded) | cifar10", choices_fn=_dataset_choices),
    "data_dir": Spec(str, "", "cifar10 only: folder holding cifar-10-batches-py/ (or the batch files themselves)"),
    "pool_size": Spec(int, 0, "examples in the pool (a seeded sample of the data set's train + test images; 0: all)",
                      min=0, max=10_000_000),
    "n_ref": Spec(int, 4, "reference (shadow) models per loss, each trained on a random half of the pool; even, so that "
                  "every example is IN for exactly half of them", min=0, max=1024),
    "losses": Spec(list, TEN_LOSSES, "losses to train, by registry name (flooding floods ce by default)",
                   choices_fn=_multiclass, nonempty=True),
    "baseline": Spec(str, "ce", "loss the others' leakage is compared against (Δ AUC of the reference attack)",
                     choices_fn=_multiclass),
    "loss_kwargs": Spec(dict, {}, 'per-loss arguments, e.g. {"flooding": {"b": 0.2}}; empty: registry defaults',
                        check=check_loss_kwargs),
    "attacks": Spec(list, list(ATTACKS), "attacks to run on every loss", check=_check_attacks, nonempty=True),
    "study_attack": Spec(str, "shadow", "attack whose accuracy / precision / recall / F1 / AUC fill the study's table",
                         choices=ATTACKS),
    "reference_attack": Spec(str, "lira_online", "attack of the privacy-utility plot and of the comparison with the "
                             "baseline", choices=ATTACKS),
    "fixed_variance": Spec(bool, True, "LiRA: one global standard deviation (recommended below 64 reference models)"),
    "rmia_gamma": Spec(float, 1.0, "RMIA: likelihood-ratio threshold gamma", min=1e-6, max=1e6),
    "rmia_offline": Spec(bool, False, "RMIA offline: Pr(x) from the OUT reference models only, approximated with rmia_a"),
    "rmia_a": Spec(float, 0.3, "RMIA offline: the a of Pr(x) ≈ ((1 + a) Pr_OUT(x) + (1 - a)) / 2", min=0.0, max=1.0),
    "n_boot": Spec(int, 1000, "bootstrap resamples for the AUC and TPR@1%FPR intervals", min=100, max=100_000),
    "alpha": Spec(float, 0.05, "significance level of the Holm-corrected comparisons", min=1e-6, max=0.5),
    "model": Spec(str, "mlp", model_help("softmax head", task="privacy"), choices_fn=_models),
    "width": Spec(int, 256, "mlp only: hidden width", min=4, max=65_536),
    "augment": Spec(bool, False, "random flips and shifts on the training images (cifar10)"),
    "workers": Spec(int, 1, "models trained in parallel processes (1: in this process)", min=1, max=256),
    **fit_params(VAL_METRICS, epochs=15, batch_size=64, optimizer="adam", lr=0.001, weight_decay=0.0,
                 scheduler="none", monitor="val_loss", precision="float64"),
    **run_params(EXPERIMENT, seed=42, num_threads=1),
}


def check_params(p: dict) -> str | None:
    """Checks across parameters, run before any work starts."""
    if p["baseline"] not in p["losses"]:
        return f"baseline {p['baseline']!r} is not among the trained losses {p['losses']}; add it to losses or pick another baseline"
    msg = check_loss_kwargs_trained(p)
    if msg:
        return msg
    msg = check_bootstrap_resolution(len(set(p["losses"])) - 1, p["n_boot"], p["alpha"])  # Holm over the challengers
    if msg:
        return msg
    if p["dataset"] == "digits" and p["data_dir"]:
        return f"data_dir={p['data_dir']!r} is set but dataset is 'digits' (embedded); set dataset=cifar10 or leave data_dir empty"
    if p["n_ref"] % 2:
        return f"n_ref={p['n_ref']} must be even, so that every example is IN for exactly half of the reference models"
    needs_refs = [a for a in p["attacks"] if a not in ("loss", "confidence")]
    if needs_refs and p["n_ref"] < 4:
        return (f"the attacks {needs_refs} need reference models (at least 4: leave-one-out scoring of the references "
                f"keeps an IN and an OUT model per example); raise n_ref or run only loss and confidence")
    for key in ("study_attack", "reference_attack"):
        if p[key] not in p["attacks"]:
            return f"{key}={p[key]!r} is not among the attacks {p['attacks']}"
    if p["model"] == "mlp" and p["dataset"] != "digits":
        return "the mlp is sized for the 8x8 digits; use model=resnet18_cifar (or tiny_cnn) for cifar10"
    side = 8 if p["dataset"] == "digits" else 32
    return check_model(p["model"], False, side)


#: the device and, with ``dataset=cifar10``, every batch, checked without torch before the
#: experiment's code is imported (:func:`lfakit.params.check_dataset_inputs`)
check_inputs = check_dataset_inputs
