"""CIFAR-10 / CIFAR-10-LT Loss Function Assessment (the LFA CIFAR-10 study): BCE, focal, ASL, ECE, F-ECE.

Every loss trains the same model one-vs-rest (a sigmoid head: K logits, one-hot targets), once
per imbalance ratio rho (and per fold with k-fold cross-validation). Results are judged **per
class** with the LFA metrics (:mod:`lfakit.metrics.lfa`: thresholds by best F1 on validation,
reported on test) and summarised as LFA's Table 2, mean ± std **across classes**.

The notebook ``notebooks/cifar_fece.ipynb`` calls, in order: :func:`setup`, :func:`load_data`,
:func:`split_summary`, :func:`train_all`, :func:`evaluate`, :func:`tables`, :func:`figures` and
:func:`save`. Every step reads the validated parameter dict ``P``.

Choices the study does not fix (documented here and in the notebook):

* ``image_size`` > 0 resizes the input inside the model (bilinear, on the device), so the data
  stay at their native 8 px (digits) or 32 px (CIFAR) in memory. The paper profile fine-tunes an
  ImageNet ResNet-50 at 224 px; ``-p pretrained=false -p image_size=0`` trains it from scratch on
  32 px images instead.
* The kept model is the best validation epoch (``monitor``), as for every kit experiment; "the
  end of training" in the LFA analysis means that model.
* With ``folds >= 2`` the per-class metrics are averaged over the folds (each fold's thresholds
  come from its own validation fold) before Table 2 takes mean ± std across classes; the
  significance tests compare the fold-averaged test probabilities; figures use fold 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from scipy.special import expit
from torch import nn

from lfakit import models, record, report
from lfakit.data import cifar
from lfakit.errors import DataError
from lfakit.metrics.lfa import (
    METRICS,
    hard_class_table,
    per_class_metrics,
    table2,
    table2_numbers,
    true_class_probability,
)
from lfakit.experiments import steps
from lfakit.experiments._shared import Trained, loss_modules, mean_auroc, mean_frame, open_checked_run, preflight_run
from lfakit.schemas.cifar_fece import EXPERIMENT, check_inputs

SPLITS = ("train", "val", "test")


def rho_label(r) -> str:
    """``10`` -> ``"10"``, ``2.5`` -> ``"2.5"`` (used in names and tables)."""
    return str(int(r)) if float(r).is_integer() else str(r)


def preflight(P: dict, inputs_checked: bool = False) -> None:
    """What the run needs beyond its parameters: CIFAR-10 on disk (``dataset=cifar10``) and the
    pretrained weights. ``lfakit run`` calls it before making a run folder; so does :func:`setup`.
    The torch-free :func:`~lfakit.schemas.cifar_fece.check_inputs` (data, device) runs first,
    unless ``lfakit run`` has run it (``inputs_checked``)."""
    preflight_run(P, None if inputs_checked else check_inputs)


def setup(P: dict) -> Path:
    """Fix threads and seeds, check inputs before any work, and open the run folder."""
    return open_checked_run(P, EXPERIMENT, preflight)


@dataclass
class Data:
    source: cifar.Source
    splits: dict[str, list[dict[str, cifar.Split]]]  # rho label -> one {train, val, test} per fold

    @property
    def classes(self) -> tuple[str, ...]:
        return self.source.classes


def load_data(P: dict) -> Data:
    """The data set and, for every imbalance ratio, its train / val / test splits (per fold)."""
    src = cifar.load_source(P["dataset"], P["data_dir"], P["digits_test_per_class"])
    splits = {}
    for r in P["imbalance_ratios"]:
        try:
            splits[rho_label(r)] = cifar.make_splits(src, float(r), P["val_fraction"], P["folds"], P["seed"])
        except DataError as e:
            raise DataError(f"imbalance ratio {rho_label(r)}: {e}") from None
    return Data(src, splits)


def split_summary(data: Data) -> pd.DataFrame:
    """Images per class in every split (fold 1 with k-fold) for each ratio, and the test set."""
    out = pd.DataFrame(index=pd.Index(list(data.classes), name="Class"))
    for rho, folds in data.splits.items():
        for name in ("train", "val"):
            out[f"{name} rho={rho}"] = folds[0][name].counts()
    out["test"] = next(iter(data.splits.values()))[0]["test"].counts()
    out.loc["total"] = out.sum()
    return out


class ResizeInput(nn.Module):
    """Resize the input batch to ``size`` x ``size`` (bilinear) before ``net``."""

    def __init__(self, net: nn.Module, size: int):
        super().__init__()
        self.net, self.size = net, int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net(x)


def input_channels(P: dict, source: cifar.Source) -> int:
    """3 for colour data; otherwise what the model takes (1 for a kit model on grayscale digits,
    3 for an ImageNet backbone, which sees the gray channel replicated)."""
    colour = source.train_images.ndim == 4
    return 3 if colour else models.input_channels(P["model"])


def build_model(P: dict, num_classes: int, channels: int) -> nn.Module:
    """The shared model builder's network with ``num_classes`` logits (sigmoid head)."""
    net = models.build_model(P["model"], num_classes, pretrained=P["pretrained"],
                             in_chans=channels, precision=P["precision"])
    return ResizeInput(net, P["image_size"]) if P["image_size"] else net


def run_prefix(rho: str, fold: int) -> str:
    """The trainings of one ratio and fold are named ``rho<r>_fold<k>_<loss>[_seed<s>]``."""
    return f"rho{rho}_fold{fold + 1}_"


training_seeds = steps.training_seeds

#: rho -> one ``{loss: {seed: Trained}}`` per fold
Runs = dict[str, list[dict[str, dict[int, Trained]]]]


def train_all(P: dict, data: Data, run_dir: Path) -> Runs:
    """Train one model per (ratio, fold, loss, seed) through the general training step
    (:func:`lfakit.experiments.steps.train_losses`): same data and schedule for every loss, the
    seed setting the initial weights and data order, the splits ``P['seed']``'s; the training
    split is predicted without augmentation."""
    channels = input_channels(P, data.source)
    runs: Runs = {}
    for rho, folds in data.splits.items():
        runs[rho] = []
        for f, splits in enumerate(folds):
            train_on, predict_on = steps.image_datasets(P, {s: (sp.images, sp.targets) for s, sp in splits.items()},
                                                        channels)
            build = lambda n=len(splits["test"].classes): build_model(P, n, channels)  # noqa: E731
            runs[rho].append(steps.train_losses(P, build, train_on, predict_on, run_dir, {"auroc": mean_auroc},
                                                prefix=run_prefix(rho, f), desc=f"rho={rho} fold={f + 1} "))
    return runs


@dataclass
class Evaluation:
    classes: tuple[str, ...]
    per_class: dict[str, dict[str, pd.DataFrame]]  # rho -> loss -> LFA metrics per class (fold mean)
    per_fold: dict[str, dict[str, list[pd.DataFrame]]]  # rho -> loss -> one frame per fold
    probs_test: dict[str, dict[str, np.ndarray]]  # rho -> loss -> test probabilities (fold mean)
    y_test: np.ndarray  # test labels (N,)
    class_sizes: dict[str, np.ndarray]  # rho -> training images per class (fold 1)
    per_class_val: dict[str, dict[str, pd.DataFrame]]  # rho -> loss -> LFA metrics on validation (fold mean)
    logits_test: dict[str, dict[str, np.ndarray]]  # rho -> loss -> float64 test logits (fold mean): what AUROC ranks
    logits_by_seed: dict[str, dict[str, dict]]  # rho -> loss -> seed -> float64 test logits (fold mean)


def evaluate(P: dict, runs: Runs, data: Data) -> Evaluation:
    """LFA metrics per class on test, thresholds by best F1 on each fold's validation split; the
    same metrics on validation (what the hard classes are chosen by, so that the test set only
    measures them). With several seeds every per-class metric is the mean over folds and seeds;
    ``per_fold`` (and the figures) hold the first seed."""
    per_class, per_fold, probs, sizes, per_val, logits, by_seed = {}, {}, {}, {}, {}, {}, {}
    seeds = training_seeds(P)
    y_test = None

    for rho, folds in data.splits.items():
        per_class[rho], per_fold[rho], probs[rho], per_val[rho], logits[rho], by_seed[rho] = {}, {}, {}, {}, {}, {}
        sizes[rho] = folds[0]["train"].counts()
        for name in P["losses"]:
            frames, vframes, p_tests, z_tests, by_seed[rho][name] = [], [], [], [], {}
            for seed in seeds:
                z_seed = []
                for f, splits in enumerate(folds):
                    r = runs[rho][f][name][seed]
                    p_val, p_test = expit(r.logits["val"]), expit(r.logits["test"])
                    yv = splits["val"].labels
                    frames.append(per_class_metrics(yv, p_val, splits["test"].labels, p_test, data.classes,
                                                    rank_test=r.logits["test"]))
                    vframes.append(per_class_metrics(yv, p_val, yv, p_val, data.classes, rank_test=r.logits["val"]))
                    p_tests.append(p_test)
                    z_tests.append(r.logits["test"])
                    z_seed.append(r.logits["test"])
                    y_test = splits["test"].labels
                by_seed[rho][name][seed] = np.mean(z_seed, axis=0)
            per_fold[rho][name] = frames[: len(folds)]
            per_class[rho][name] = mean_frame(frames)
            per_val[rho][name] = mean_frame(vframes)
            probs[rho][name] = np.mean(p_tests, axis=0)
            logits[rho][name] = np.mean(z_tests, axis=0)
    return Evaluation(tuple(data.classes), per_class, per_fold, probs, y_test, sizes, per_val, logits, by_seed)


def _per_ratio(ev: Evaluation, table) -> pd.DataFrame:
    """``table(per_class_by_loss)`` of every ratio stacked, with a leading ``rho`` column."""
    parts = []
    for rho, by_loss in ev.per_class.items():
        t = table(by_loss).reset_index()
        t.insert(0, "rho", rho)
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def table2_all(ev: Evaluation) -> pd.DataFrame:
    """LFA Table 2 for every ratio: rows (rho, loss), mean±std across classes per metric."""
    return _per_ratio(ev, table2)


def comparison_summary(comp: pd.DataFrame) -> pd.DataFrame:
    """Per class (rows) and challenger (columns): ``ΔAUC vs baseline (p, Holm p)``; ``n.s.`` unless
    the Holm-adjusted p (family: every row of that ratio's comparison table) is below 0.05. With
    one seed per loss these are differences of the two trained models over test-set sampling, not
    verdicts (:func:`comparison_note`)."""
    def cell(row):
        if not np.isfinite(row["Delta"]):
            return "n/a"
        delta = round(float(row["Delta"]), 3) + 0.0  # never "-0.000"
        sig = row["p (Holm)"] < 0.05
        return f"{delta:+.3f} (p={row['p-value']:.3f}, Holm {row['p (Holm)']:.3f}){'' if sig else ' n.s.'}"

    out = comp.assign(cell=comp.apply(cell, axis=1)).pivot(index="Class", columns="Challenger", values="cell")
    order = list(dict.fromkeys(comp["Class"]))
    return out.loc[order, list(dict.fromkeys(comp["Challenger"]))]


def comparison_note(P: dict) -> str:
    """What the comparison's evidence covers (printed beside the tables)."""
    if len(training_seeds(P)) > 1:
        return (f"Evidence: {len(P['seeds'])} trained models per loss and ratio (seeds {P['seeds']}) on one split and "
                "test set. Each row is the seed-level t: the seed-to-seed spread of the paired per-seed AUC "
                "differences beyond the test-set noise is added to the test-set variance of their mean (DeLong's "
                "covariance per class, the bootstrap covariance for the mean). Holm family: every row of one ratio's "
                "table; each ratio is its own family (lfakit compare corrects over all ratios and folds at once).")
    return (f"Evidence: one trained model per loss and ratio (seed {P['seeds'][0] if P['seeds'] else P['seed']}). "
            "Each entry is the difference of these two models: DeLong per class and a paired bootstrap of the mean, "
            "over test-set sampling only; another seed could reverse it, so none is a verdict about the losses. "
            "Holm family: every row of one ratio's table. For a verdict: -p 'seeds=[0, 1, 2]'.")


def tables(P: dict, ev: Evaluation) -> dict[str, pd.DataFrame]:
    """Table 2, the hard-class tables, the per-class metrics and the significance tables."""
    out = {"table2": table2_all(ev)}
    for rho, by_loss in ev.per_class.items():
        out[f"hard_classes_rho{rho}"] = hard_class_table(by_loss, P["hard_classes"], ev.class_sizes[rho],
                                                         select_by=ev.per_class_val[rho])
        for name, df in by_loss.items():
            out[f"per_class_rho{rho}_{name}"] = df[list(METRICS)].round(4) + 0.0
        if len(by_loss) > 1:
            comp = steps.compare_logits(P, np.eye(len(ev.classes))[ev.y_test], ev.logits_by_seed[rho], ev.classes)
            out[f"comparison_rho{rho}"] = comp
            out[f"significance_rho{rho}"] = comparison_summary(comp)
    if P["folds"] >= 2:
        rows = []
        for rho, by_loss in ev.per_fold.items():
            for name, frames in by_loss.items():
                for f, df in enumerate(frames):
                    rows.append({"rho": rho, "loss": name, "fold": f + 1, **df[list(METRICS)].mean().round(4).to_dict()})
        out["folds"] = pd.DataFrame(rows)
    return out


# --------------------------------------------------------------------------------------------
# LFA analysis figures
# --------------------------------------------------------------------------------------------


def plot_true_class_probability(labels, probs_by_loss: dict, classes, hard=(), title: str = "") -> Figure:
    """Per class (panels), the distribution of each image's predicted probability of its own
    class, one box per loss (whiskers 5-95 %, mean as a dot). Hard classes have red titles."""
    labels = np.asarray(labels)
    names = list(probs_by_loss)
    colors = report.colors_for(names)
    ncols = min(5, len(classes))
    nrows = math.ceil(len(classes) / ncols)
    ptrue = {n: true_class_probability(labels, p) for n, p in probs_by_loss.items()}
    with report.style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(min(report.FIG_WIDTH, 1.95 * ncols + 0.5), 2.45 * nrows + 0.6),
                                 squeeze=False, sharey=True, layout="constrained")
        for c, ax in zip(range(len(classes)), axes.flat):
            mask = labels == c
            vals = [ptrue[n][mask] for n in names]
            if mask.any():
                bp = ax.boxplot(vals, whis=(5, 95), showfliers=False, patch_artist=True, widths=0.6)
                for patch, n in zip(bp["boxes"], names):
                    patch.set_facecolor(colors[n])
                    patch.set_alpha(0.6)
                ax.plot(range(1, len(names) + 1), [v.mean() for v in vals], "k.", markersize=5)
            is_hard = classes[c] in hard
            ax.set_title(f"{classes[c]} (n={int(mask.sum())}){' hard' if is_hard else ''}", fontsize=9,
                         color="tab:red" if is_hard else "black")
            ax.set_xticks(range(1, len(names) + 1))
            ax.set_xticklabels(names, rotation=60, ha="right", rotation_mode="anchor")
            ax.set_ylim(-0.02, 1.02)
        for ax in axes.flat[len(classes):]:
            fig.delaxes(ax)
        fig.supylabel("p(true class)")
        fig.suptitle(title or "Predicted probability of the true class")
    return report._ticks(fig)


def plot_recall_vs_size(per_class_by_rho: dict, sizes_by_rho: dict, classes) -> Figure:
    """Per long-tailed ratio (panels): test recall of every class against its number of training
    images (log scale), one line per loss."""
    ratios = [r for r in per_class_by_rho if float(r) > 1]
    n = max(1, len(ratios))
    with report.style():
        fig, axes = plt.subplots(1, n, figsize=(min(report.FIG_WIDTH, 5.0 * n), 3.8), squeeze=False, layout="constrained")
        if not ratios:
            axes[0, 0].text(0.5, 0.5, "no long-tailed ratio (rho > 1) in this run", ha="center", va="center")
            axes[0, 0].set_axis_off()
        for ax, rho in zip(axes.flat, ratios):
            sizes = np.asarray(sizes_by_rho[rho])
            order = np.argsort(sizes, kind="stable")
            by_loss = per_class_by_rho[rho]
            colors = report.colors_for(list(by_loss))
            for name, df in by_loss.items():
                ax.plot(sizes[order], df["Recall"].to_numpy()[order], marker="o", markersize=4, color=colors[name], label=name)
            for j in order:
                ax.annotate(str(classes[j]), (sizes[j], 0.0), fontsize=report.MIN_FONT, rotation=90, ha="center", va="bottom")
            ax.set_xscale("log")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("training images of the class")
            ax.set_ylabel("test recall")
            ax.set_title(f"rho = {rho}")
            ax.legend()
    return report._ticks(fig)


def hard_set(table: pd.DataFrame) -> set:
    return {c for c, h in table["hard"].items() if h}


def figures(P: dict, ev: Evaluation, runs: Runs, data: Data, tabs: dict, run_dir: Path) -> dict[str, Figure]:
    """True-class probability distributions (test and training split) per ratio, recall against
    class size, per-class AUC and training curves; saved under ``figures/`` and returned."""
    figs = {}
    for rho, folds in data.splits.items():
        hard = hard_set(tabs[f"hard_classes_rho{rho}"])
        for split in ("test", "train"):
            probs = {n: expit(steps.first(r).logits[split]) for n, r in runs[rho][0].items()}
            figs[f"true_class_prob_{split}_rho{rho}"] = plot_true_class_probability(
                folds[0][split].labels, probs, ev.classes, hard,
                f"p(true class) on the {split} split, rho = {rho}" + (" (fold 1)" if P["folds"] else ""))
        figs[f"per_class_auc_rho{rho}"] = report.plot_per_class_auroc(
            {n: df.rename(columns={"AUC": "AUROC"}) for n, df in ev.per_class[rho].items()})
        figs[f"history_rho{rho}"] = report.plot_history(
            {n: steps.first(r).history for n, r in runs[rho][0].items()})
    figs["recall_vs_class_size"] = plot_recall_vs_size(ev.per_class, ev.class_sizes, ev.classes)
    for name, fig in figs.items():
        report.save_figure(fig, run_dir / "figures" / f"{name}.png")
    return figs


HEADLINE_ABOUT = ("LFA Table 2 in numbers: per imbalance ratio and loss, the mean and std (ddof=0) across classes of "
                  "each per-class metric on test, thresholds by best F1 on validation; k-fold: per-class metrics "
                  "averaged over folds (and training seeds) first; rounded to 4 decimals")


def table2_numbers_all(ev: Evaluation) -> pd.DataFrame:
    """Table 2's numbers for every ratio: rows (rho, loss), ``<metric> mean`` / ``<metric> std``."""
    return report.round_floats(_per_ratio(ev, table2_numbers), 4)


def save(P: dict, run_dir: Path, runs: Runs, ev: Evaluation, data: Data, tabs: dict[str, pd.DataFrame]) -> list[str]:
    """Write the run record (:mod:`lfakit.record`): every run's logits and per-image losses on
    every split (group ``rho=<r>/fold=<k>``), metrics.json with Table 2's numbers as headline,
    tables/*.csv and the manifest; return the files of the run folder."""
    pw = record.PredictionWriter()
    for rho, folds in data.splits.items():
        for f, splits in enumerate(folds):
            steps.add_predictions(pw, runs[rho][f], {s: (sp.ids, sp.labels) for s, sp in splits.items()},
                                  group=f"rho={rho}/fold={f + 1}")
    built = loss_modules(P)
    methods = {
        name: {
            "config": repr(built[name]),
            "per_ratio": {
                rho: {
                    "best_epochs": {str(seed): [runs[rho][f][name][seed].best_epoch for f in range(len(data.splits[rho]))]
                                    for seed in training_seeds(P)},
                    "per_class": {c: {m: float(by_loss[name].loc[c, m]) for m in METRICS} for c in by_loss[name].index},
                }
                for rho, by_loss in ev.per_class.items()
            },
        }
        for name in P["losses"]
    }
    extra = {
        "dataset": P["dataset"],
        "classes": list(ev.classes),
        "baseline": P["baseline"],
        "train_counts": {rho: [int(v) for v in ev.class_sizes[rho]] for rho in ev.class_sizes},
        "threshold_rule": "per class, the probability threshold maximising F1 on validation; every metric on test",
        "targets": "the class label of each image; scores are the K one-vs-rest logits",
        "definitions": {"miss": "FN/(TP+FN)", "overflow": "FP/(TP+FP)", "F0": "precision (F-beta, beta=0)", "acc": "one-vs-rest (TP+TN)/N"},
    }
    return record.save_run(run_dir, EXPERIMENT, P, methods=methods,
                           headline=("table2_numbers", table2_numbers_all(ev), HEADLINE_ABOUT), tables=tabs,
                           predictions=pw, score_kind="logit", extra=extra)
