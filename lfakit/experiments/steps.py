"""The general steps of a loss comparison on a labelled image data set, which the study
experiments and ``own_data`` call: the training of every loss (and seed) on the same data, the
evaluation of the trained models, the comparison with the baseline under Holm's correction, and
the predictions of the run record.

Two kinds of comparison live here:

* **classification** (multi-label, multi-class scored one class against the rest): per-class
  AUROC and F1 at the validation-tuned threshold, per seed and averaged over seeds
  (:func:`evaluate_classification`); DeLong per class and a paired bootstrap of the mean with one
  seed, the seed-level t with two or more (:func:`classification_comparison`). Used by
  ``chestxray_zlpr``, ``cifar_fece`` (its LFA metrics are its own; the comparison is this one)
  and ``own_data``.
* **score regression** (IQA-like): SRCC / KRCC / PLCC raw and after the 4-parameter logistic
  map, RMSE (:func:`score_metrics_table`), and a paired bootstrap of the SRCC difference with
  Holm within families of comparisons (:func:`score_comparison_table`). Used by ``iqa_losses``
  and ``own_data``.

Each experiment keeps what is its own: its data set's loader, its model's input handling, its
tables, figures and questions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd
from scipy.special import expit
from torch import nn

from lfakit import record, report, stats
from lfakit.data.datasets import ArrayImageDataset
from lfakit.errors import TrainingError
from lfakit.experiments._shared import Trained, loss_modules, mean_frame, train_or_resume
from lfakit.metrics import iqa as iqa_metrics
from lfakit.metrics.classification import multilabel_report

# ------------------------------------------------------------------------------------------ training


def training_seeds(P: dict) -> list[int]:
    """The seeds every loss is trained with: ``seeds`` (when the experiment has it and it is set),
    else ``[seed]``."""
    return [int(v) for v in P.get("seeds") or []] or [int(P["seed"])]


def run_tag(P: dict, name: str, seed: int, prefix: str = "") -> str:
    """The file name of one training: ``<prefix><loss>``, with ``_seed<k>`` when ``seeds`` is set."""
    return f"{prefix}{name}" + (f"_seed{seed}" if P.get("seeds") else "")


def image_datasets(P: dict, splits: Mapping[str, tuple], channels: int, cls=ArrayImageDataset) -> tuple[dict, dict]:
    """``(train_on, predict_on)``: split -> dataset of ``(images, targets)``, augmented on the
    training split when ``P['augment']``, and the same splits without augmentation, which the
    trained model predicts (the training split included: its stored images, not augmented copies)."""
    plain = {s: cls(x, y, channels=channels) for s, (x, y) in splits.items()}
    train_on = dict(plain)
    if P["augment"] and "train" in splits:
        x, y = splits["train"]
        train_on["train"] = cls(x, y, channels=channels, augment=True)
    return train_on, plain


def train_losses(P: dict, build: Callable[[], nn.Module], train_on: dict, predict_on: dict, run_dir: Path,
                 val_metrics: dict, *, prefix: str = "", desc: str = "", **train_kw) -> dict[str, dict[int, Trained]]:
    """One model per loss of ``P['losses']`` and training seed, each from ``build()`` with the
    same data and schedule; ``{loss: {seed: Trained}}``. The seed sets the initial weights and
    the data order (every loss gets the same ones); the data split is the caller's.
    ``prefix``/``desc`` name the trainings of one part of a study (``rho10_fold1_``);
    ``train_kw`` go to :func:`~lfakit.experiments._shared.train_or_resume`."""
    seeded = bool(P.get("seeds"))
    out: dict[str, dict[int, Trained]] = {}
    for name, fn in loss_modules(P).items():
        out[name] = {}
        for s in training_seeds(P):
            out[name][s] = train_or_resume({**P, "seed": s}, run_tag(P, name, s, prefix), fn, build,
                                           train_on["train"], train_on["val"], predict_on, run_dir, val_metrics,
                                           f"{desc}{name}" + (f" seed {s}" if seeded else ""), **train_kw)
    return out


def first(by_seed: Mapping[int, object]):
    """The first seed's entry (what the figures and single-seed tables show)."""
    return next(iter(by_seed.values()))


# ------------------------------------------------------------------------------------------ classification


@dataclass
class ClassEvaluation:
    """Test-set metrics of every loss's models on a classification task."""

    classes: list[str]
    per_class: dict[str, pd.DataFrame]  # loss -> Class x (AUROC, F1, Threshold, ...), mean over seeds
    per_seed: dict[str, dict[int, pd.DataFrame]]  # loss -> seed -> per-class report
    logits_by_seed: dict[str, dict[int, np.ndarray]]  # loss -> seed -> float64 test logits (what AUROC ranks)
    probs_by_seed: dict[str, dict[int, np.ndarray]]  # loss -> seed -> test probabilities
    y_test: np.ndarray  # (N, C) 0/1 (multi-class: one-hot)
    test_loss: dict[str, float]  # loss -> mean test loss over seeds, in the loss's own convention
    left_out: list[str]  # classes without both label values on test: in no average

    @property
    def logits_test(self) -> dict[str, np.ndarray]:
        return {n: first(v) for n, v in self.logits_by_seed.items()}

    @property
    def probs_test(self) -> dict[str, np.ndarray]:
        return {n: first(v) for n, v in self.probs_by_seed.items()}

    def average(self, name: str, column: str) -> float:
        """The mean over classes of a per-class column (seed means; undefined classes skipped)."""
        return float(np.nanmean(self.per_class[name][column]))


def evaluate_classification(runs: Mapping[str, Mapping[int, Trained]], y_val: np.ndarray, y_test: np.ndarray,
                            classes, probability: Callable[[np.ndarray], np.ndarray] = expit) -> ClassEvaluation:
    """Per-class AUROC on test (of the float64 logits) and F1 on test at the per-class threshold
    that maximises F1 on val (:func:`~lfakit.metrics.classification.multilabel_report`), per
    seed; each per-class metric is then the mean over seeds. ``y_val``/``y_test`` are (N, C) 0/1;
    ``probability`` turns logits into the probabilities thresholds are tuned on (``expit``, or a
    row softmax for multi-class). A class whose test labels are all equal has no AUROC and no F1
    and is in no average."""
    classes = list(classes)
    per_class, per_seed, logits, probs, loss = {}, {}, {}, {}, {}
    for name, seeds in runs.items():
        reps, logits[name], probs[name] = {}, {}, {}
        for s, r in seeds.items():
            zv, zt = r.logits["val"], r.logits["test"]
            pt = probability(zt)
            reps[s] = multilabel_report(y_val, probability(zv), y_test, pt, classes, rank_test=zt)
            logits[name][s], probs[name][s] = zt, pt
        per_seed[name], per_class[name] = reps, mean_frame(list(reps.values()))
        loss[name] = float(np.mean([r.loss("test") for r in seeds.values()]))
    n_pos = np.asarray(y_test).sum(0)
    left_out = [c for c, k in zip(classes, n_pos) if k == 0 or k == len(y_test)]
    return ClassEvaluation(classes, per_class, per_seed, logits, probs, np.asarray(y_test), loss, left_out)


def classification_comparison(P: dict, ev: ClassEvaluation, classes=None, **kw) -> pd.DataFrame:
    """Every loss against ``P['baseline']`` per class and for the mean AUROC, Holm over every row:
    the seed-level t with two or more training seeds, else DeLong per class and a paired bootstrap
    of the mean over the test set only (:func:`lfakit.report.comparison_table`)."""
    return compare_logits(P, ev.y_test, ev.logits_by_seed, ev.classes if classes is None else classes, **kw)


def compare_logits(P: dict, y_test: np.ndarray, logits_by_seed: Mapping[str, Mapping[int, np.ndarray]], classes,
                   **kw) -> pd.DataFrame:
    """:func:`classification_comparison` of ``{loss: {seed: (N, C) test logits}}``."""
    if "n_boot" in P:
        kw.setdefault("n_boot", P["n_boot"])
    if len(training_seeds(P)) > 1:
        return report.seed_comparison_table(y_test, logits_by_seed, P["baseline"], classes, seed=P["seed"], **kw)
    return report.comparison_table(y_test, {n: first(v) for n, v in logits_by_seed.items()}, P["baseline"], classes,
                                   seed=P["seed"], **kw)


def comparison_note(P: dict, experiment: str, unit: str = "", metric: str = "AUROC") -> str:
    """What a classification comparison's evidence covers, printed beside the table. ``unit``
    names what else each model is one of (``" and ratio"``)."""
    seeds = training_seeds(P)
    if len(seeds) > 1:
        return (f"Evidence: {len(seeds)} trained models per loss{unit} (seeds {seeds}) on one split and test set. Each "
                f"row is the seed-level t: the seed-to-seed spread of the paired per-seed {metric} differences beyond "
                "the test-set noise is added to the test-set variance of their mean (DeLong's covariance of every "
                f"model per class; the bootstrap covariance of the models' mean {metric} for the Mean row), with its "
                "95% interval. Holm family: every row of the table (each challenger's classes and Mean). A Winner is named "
                "where the corrected p < 0.05.")
    return (f"Evidence: one trained model per loss{unit} (seed {seeds[0]}). Each row is the difference of these two "
            "models: DeLong per class, a paired stratified bootstrap for the Mean, over test-set sampling only. Another "
            "seed could reverse any of them, so no Winner is named. Holm family: every row of the table. For a verdict "
            f"about the losses: lfakit run {experiment} -p 'seeds=[0, 1, 2]'.")


# ------------------------------------------------------------------------------------------ score regression


@dataclass
class ScoreRun:
    """One loss's training on a score task: per-image scores on the predicted splits (None if it
    failed), the kept epoch, the history (with seconds per epoch) and its status."""

    loss: str
    scores: dict[str, np.ndarray] | None
    best_epoch: int
    history: pd.DataFrame
    status: str

    @property
    def ok(self) -> bool:
        return self.scores is not None

    @property
    def seconds_per_epoch(self) -> float:
        return float(self.history["seconds"].mean()) if len(self.history) else math.nan

    @property
    def train_seconds(self) -> float:
        return float(self.history["seconds"].sum()) if len(self.history) else math.nan


def train_scored(P: dict, name: str, fn: Callable[[], Trained], to_scores: Callable[[np.ndarray], np.ndarray]
                 ) -> ScoreRun:
    """Run one loss's training ``fn()`` (a :func:`~lfakit.experiments._shared.train_or_resume`
    call) and turn its outputs into per-image scores with ``to_scores``. A training the engine
    stops (NaN loss, divergence) is kept as a failed run, so that the other losses still compare."""
    try:
        t = fn()
    except TrainingError as e:
        return ScoreRun(name, None, 0, pd.DataFrame({"epoch": [], "seconds": []}), f"failed: {e}")
    scores = {s: to_scores(z) for s, z in t.logits.items() if s != "train"}
    epochs = len(t.history)
    status = "complete" if epochs == P["epochs"] else f"complete (early stop after epoch {epochs})"
    return ScoreRun(name, scores, t.best_epoch, t.history, status)


def fit_label(m: dict) -> str:
    """``ok``, ``width floor`` (the fit is the steepest the bound allows, a near-step; its PLCC
    (logistic) is that step's) or ``failed: raw`` (the logistic columns hold the raw values)."""
    if not m["logistic_fit_ok"]:
        return "failed: raw"
    return "width floor" if m["logistic_at_width_floor"] else "ok"


def score_metrics_table(runs: Mapping[str, ScoreRun], mos: np.ndarray, split: str = "test") -> pd.DataFrame:
    """Per loss on ``split``: SRCC, KRCC (tau-b), PLCC of the raw scores and after the
    4-parameter logistic map, RMSE after that map (on the score's scale), and how the fit went
    (``ok``; ``width floor``: the steepest map the fit allows, a near-step; ``failed: raw``: the
    logistic columns hold the raw-score values)."""
    rows = []
    for name, r in runs.items():
        if not r.ok or len(mos) < 3:
            rows.append({"Loss": name, "SRCC": math.nan, "KRCC": math.nan, "PLCC (raw)": math.nan,
                         "PLCC (logistic)": math.nan, "RMSE (logistic)": math.nan,
                         "Logistic fit": "n/a" if not r.ok else f"n/a ({len(mos)} images)"})
            continue
        m = iqa_metrics.iqa_report(r.scores[split], mos)
        rows.append({"Loss": name, "SRCC": m["srcc"], "KRCC": m["krcc"], "PLCC (raw)": m["plcc_raw"],
                     "PLCC (logistic)": m["plcc_logistic"], "RMSE (logistic)": m["rmse_logistic"],
                     "Logistic fit": fit_label(m)})
    return report.round_floats(pd.DataFrame(rows), 4)


#: the Test of every score comparison row: one trained model per loss, so the test covers test-set sampling only
TEST_SET_ONLY = "paired bootstrap, test set only"


def score_comparison_table(P: dict, runs: Mapping[str, ScoreRun], mos: np.ndarray,
                           family: Callable[[str], str] = lambda name: "all") -> pd.DataFrame:
    """Every trained loss against ``P['baseline']``, one trained model each: test SRCC of both
    models, ``Δ SRCC (these models)`` with the percentile 95% interval and two-sided p of a
    paired bootstrap over the test images (``n_boot`` resamples, ``seed``; interval and p from
    the same resamples, the interval not adjusted for multiplicity) and the Holm-adjusted p
    within the challenger's ``Holm family`` (``family(name)``; one family by default).

    These tests cover test-set sampling only: they say whether *these two models* differ, not
    whether one loss trains better models (another seed could reverse it), so the table has no
    Winner column; ``Test`` says so and ``Seeds`` is 1."""
    base = P["baseline"]
    rows = []
    for name, r in runs.items():
        if name == base:
            continue
        if not (r.ok and runs[base].ok):
            rows.append([name, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan])
            continue
        b = stats.paired_bootstrap_correlation(mos, runs[base].scores["test"], r.scores["test"], "srcc",
                                               P["n_boot"], P["seed"])
        rows.append([name, b["metric1"], b["metric2"], b["delta"], b["ci_low"], b["ci_high"], b["p_value"]])
    cols = ["Challenger", "Baseline SRCC", "SRCC", "Δ SRCC (these models)", "CI low (test set)", "CI high (test set)",
            "p (test set)"]
    out = pd.DataFrame(rows, columns=cols)
    out["Holm family"] = [family(n) for n in out["Challenger"]]
    out["p (Holm)"] = np.nan
    for fam in out["Holm family"].unique():
        rows_f = out["Holm family"] == fam
        out.loc[rows_f, "p (Holm)"] = stats.holm(out.loc[rows_f, "p (test set)"].to_numpy(float))
    out["Test"] = TEST_SET_ONLY
    out["Seeds"] = 1
    out.attrs["baseline"] = base
    return report.round_floats(out, 4)


# ------------------------------------------------------------------------------------------ run record


def add_predictions(pw: record.PredictionWriter, runs: Mapping[str, Mapping[int, Trained]],
                    splits: Mapping[str, tuple[np.ndarray, np.ndarray]], group: str = "") -> None:
    """Every loss's and seed's logits and per-sample losses on every split (``(ids, targets)``)."""
    for name, seeds in runs.items():
        for seed, r in seeds.items():
            for split, (ids, targets) in splits.items():
                pw.add(name, split, seed, ids, targets, r.logits[split], r.sample_loss[split], group=group)


def method_records(P: dict, runs: Mapping[str, Mapping[int, Trained]]) -> dict[str, dict]:
    """``metrics.json``'s entry per loss that every classification experiment writes: the loss as
    built (its arguments) and the kept epoch per seed."""
    built = loss_modules(P)
    return {name: {"config": repr(built[name]), "best_epoch": {int(s): r.best_epoch for s, r in seeds.items()}}
            for name, seeds in runs.items()}
