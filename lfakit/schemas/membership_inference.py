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
QUERIES = ("identity", "mirror", "mirror_shifts")  # as lfakit.experiments.membership_inference.QUERY_SETS
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
    "queries": Spec(str, "identity", "queries per example, each attack reading all of them: identity (1) | mirror "
                    "(identity + left-right mirror: LiRA's default) | mirror_shifts (both orientations x shifts of -1, 0, "
                    "1 pixel, reflect-padded: 18, the RMIA paper's)", choices=QUERIES),
    "n_targets": Spec(int, 3, "models attacked as the target per loss (the target, then the first reference models, "
                      "each with the other n_ref models as references); tables give mean and sd over them, and the "
                      "leakage verdict tests against their spread", min=1, max=1025),
    "fixed_variance": Spec(bool, True, "LiRA: one global standard deviation (recommended below 64 reference models)"),
    "lira_center": Spec(str, "mean", "LiRA: per-example centre of the IN / OUT fits: mean | median (LiRA's plot.py)",
                        choices=("mean", "median")),
    "lira_fixed_sd": Spec(str, "separate", "LiRA online with fixed_variance: separate (each side its own global sd) | "
                          "in_for_both (LiRA's plot.py: the IN sd for both sides)", choices=("separate", "in_for_both")),
    "ref_counts": Spec(str, "balanced", "LiRA and RMIA: which reference models each example's fits use: balanced (the "
                       "first min(n_in, n_out) IN and OUT models, so a reference model attacked as a target is not biased "
                       "by its members being IN for fewer of the others) | reference_code (LiRA's plot.py truncation; "
                       "the RMIA paper code's first n_ref/2 of each) | all", choices=("balanced", "reference_code", "all")),
    "lira_offline_test": Spec(str, "one_sided", "LiRA offline: one_sided (the paper's Algorithm 1) | two_sided "
                              "(LiRA's plot.py: -log N(phi; mu_out, s_out))", choices=("one_sided", "two_sided")),
    "rmia_gamma": Spec(float, 2.0, "RMIA: likelihood-ratio threshold gamma (the paper's CIFAR configs: 2)", min=1e-6,
                       max=1e6),
    "rmia_trim": Spec(float, 0.2, "RMIA: proportion cut from each end for the trimmed mean Pr(x) over the reference "
                      "models (the paper's configs: 0.2; 0: the plain mean)", min=0.0, max=0.49),
    "rmia_signal": Spec(str, "taylor_soft_margin", "RMIA: p(x | model): taylor_soft_margin (the paper's configs) | "
                        "softmax", choices=("taylor_soft_margin", "softmax")),
    "rmia_temperature": Spec(float, 2.0, "RMIA: temperature dividing the logits (the paper's configs: 2)", min=1e-3,
                             max=1e3),
    "rmia_margin": Spec(float, 0.6, "RMIA taylor_soft_margin: the soft margin m (the paper's configs: 0.6)", min=0.0,
                        max=100.0),
    "rmia_taylor_order": Spec(int, 4, "RMIA taylor_soft_margin: terms of the truncated exponential (the paper's "
                              "configs: 4)", min=2, max=20),
    "rmia_population": Spec(str, "non_members", "RMIA: the population z: non_members (each attacked model's "
                            "non-members, as the paper's code) | all (every pool point)", choices=("non_members", "all")),
    "rmia_self_vote": Spec(str, "excluded", "RMIA: a population point compared with itself: excluded | as_paper_code "
                           "(the paper code's correction, one vote more for every population point)",
                           choices=("excluded", "as_paper_code")),
    "rmia_offline": Spec(bool, False, "RMIA offline: Pr(x) from the OUT reference models only, approximated with a"),
    "rmia_tune_a": Spec(bool, True, "RMIA offline: a tuned on a paired reference model as ML Privacy Meter does; false: "
                        "rmia_a"),
    "rmia_a": Spec(float, 0.3, "RMIA offline without tuning: the a of Pr(x) ≈ ((1 + a) Pr_OUT(x) + (1 - a)) / 2 (the "
                   "paper's configs: 0.3)", min=0.0, max=1.0),
    "tpr_fpr_rule": Spec(str, "at_most", "TPR at x% FPR over the ROC points whose FPR is at_most x (ML Privacy Meter) "
                         "| below x (LiRA's plot.py)", choices=("at_most", "below")),
    "keep_checkpoints": Spec(bool, False, "keep every model's checkpoints after its logits are saved (default: "
                             "deleted then; at most best.pt and last.pt while a model trains)"),
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
    if p["n_targets"] > p["n_ref"] + 1:
        return f"n_targets={p['n_targets']} exceeds the {p['n_ref'] + 1} models per loss (the target + n_ref); lower it"
    if p["rmia_offline"] and p["rmia_tune_a"] and "rmia" in p["attacks"] and p["n_ref"] < 4:
        return "tuning RMIA's offline a needs n_ref >= 4 (a paired model held out); set rmia_tune_a=false or raise n_ref"
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
