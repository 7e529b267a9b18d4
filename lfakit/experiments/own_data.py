"""Your data, your loss: compare registered losses on an image folder or a CSV index.

The notebook ``notebooks/own_data.ipynb`` calls, in order: :func:`setup` (threads, seed, the data
read and checked, run folder), :func:`load_data`, :func:`train_all`, :func:`evaluate`,
:func:`tables`, :func:`figures` and :func:`save`. The steps are those of the study experiments:
the kit's image cache and ``ArrayImageDataset``, ``engine.fit`` through
:func:`lfakit.experiments._shared.train_or_resume`, per-class AUROC / F1 (multi-class and
multi-label, as ``chestxray_zlpr``) or SRCC / PLCC (score, as ``iqa_losses``), and the
comparison against the baseline with Holm's correction (DeLong per class and a paired bootstrap
for the mean; for scores a paired bootstrap of the SRCC difference). One model per loss: the
comparison is between *these models* on this test set and names no Winner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.special import expit, softmax
from torch import nn

from lfakit import models, record, report, stats
from lfakit.catalog import MODELS
from lfakit.data import folders
from lfakit.data.datasets import ArrayImageDataset
from lfakit.experiments._shared import (Trained, loss_modules, mean_auroc, open_checked_run, preflight_device,
                                        preflight_losses, train_or_resume)
from lfakit.metrics import iqa as iqa_metrics
from lfakit.metrics.classification import multilabel_report
from lfakit.schemas.own_data import EXPERIMENT, check_inputs, read

SPLITS = folders.SPLITS


def data_folder(P: dict) -> Path:
    return Path(P["data_dir"]).expanduser() if P["data_dir"] else folders.embedded_digits_folder(P["cache_dir"] or None)


def preflight(P: dict, inputs_checked: bool = False) -> None:
    """The data (read and split, torch-free), the losses, the device and any pretrained weights."""
    if not inputs_checked:
        check_inputs(P)
    preflight_losses(P)
    preflight_device(P)
    if P["pretrained"] and P["model"] in MODELS:
        models.ensure_weights(P["model"])


def setup(P: dict) -> Path:
    return open_checked_run(P, EXPERIMENT, preflight)


@dataclass
class Data:
    index: folders.Index
    splits: dict[str, folders.Split]

    @property
    def classes(self) -> list[str]:
        return self.index.classes


def _subset(rows: dict, n: int, seed: int) -> dict:
    if not n:
        return rows
    total = sum(len(r) for r in rows.values())
    rng = np.random.default_rng(seed)
    return {s: np.sort(rng.permutation(r)[:max(2, round(n * len(r) / total))]) for s, r in rows.items()}


def load_data(P: dict) -> Data:
    """Read the layout, split it (the layout's own split or a seeded stratified one), and load the
    images through the uint8 cache (gray for a 1-channel model, RGB otherwise)."""
    index = read({**P, "data_dir": str(data_folder(P))})
    rows = _subset(folders.split_index(index, P["val_fraction"], P["test_fraction"], P["seed"]), P["max_images"], P["seed"])
    mode = "L" if _channels(P) == 1 else "RGB"
    cache = Path(P["cache_dir"]).expanduser() if P["cache_dir"] else None
    return Data(index, folders.load_splits(index, rows, P["image_size"], mode, cache, progress=False))


def data_summary(data: Data) -> pd.DataFrame:
    """Images per split and per class (multi-class: images of the class; multi-label: positives;
    score: mean and SD of the score)."""
    out = {}
    for s, sp in data.splits.items():
        row = {"images": len(sp.image_ids)}
        if data.index.task == "multiclass":
            row.update({c: int((sp.targets == k).sum()) for k, c in enumerate(data.classes)})
        elif data.index.task == "multilabel":
            row.update(dict(zip(data.classes, sp.targets.sum(0).astype(int))))
        else:
            row.update({"mean score": float(sp.targets.mean()), "sd": float(sp.targets.std())})
        out[s] = row
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------ model


def _channels(P: dict) -> int:
    return models.input_channels(P["model"]) if P["model"] in MODELS else 3


def _outputs(P: dict, data: Data) -> int:
    return 1 if P["task"] == "score" else len(data.classes)


def build_net(P: dict, n_out: int) -> nn.Module:
    """A registered model, or a torchvision classification model by name with its last Linear
    replaced by one of ``n_out`` outputs (ImageNet weights with ``pretrained``)."""
    if P["model"] in MODELS:
        return models.build_model(P["model"], n_out, pretrained=P["pretrained"], in_chans=_channels(P),
                                  precision=P["precision"])
    import torchvision.models as tvm

    from lfakit.runtime import default_dtype

    with default_dtype(P["precision"]):
        net = tvm.get_model(P["model"], weights="DEFAULT" if P["pretrained"] else None)
        parent, attr, last = None, None, None
        for name, mod in net.named_modules():
            if isinstance(mod, nn.Linear):
                last = name
        *path, attr = last.split(".")
        parent = net.get_submodule(".".join(path)) if path else net
        old = getattr(parent, attr)
        setattr(parent, attr, nn.Linear(old.in_features, n_out))
    return net


class _LabelImages(ArrayImageDataset):
    """int64 class labels as ``y`` (what the multi-class losses take), read a batch at a time."""

    def __init__(self, images, labels, **kw):
        super().__init__(images, np.zeros(len(labels), np.float32), **kw)
        self.labels = np.asarray(labels, dtype=np.int64)

    def get(self, index, generator=None):
        x, _, i = super().get(index, generator)
        return x, torch.tensor(self.labels[i]), i

    def batch_targets(self, idx):
        return torch.from_numpy(self.labels[idx])


def datasets(P: dict, data: Data) -> dict:
    ch = _channels(P)
    cls = _LabelImages if P["task"] == "multiclass" else ArrayImageDataset
    return {s: cls(sp.images, sp.targets, channels=ch, augment=P["augment"] and s == "train")
            for s, sp in data.splits.items()}


def _val_metrics(P: dict, data: Data) -> dict:
    if P["task"] == "score":
        return {"srcc": lambda y, s: iqa_metrics.srcc(np.ravel(s), np.ravel(y)) if np.ptp(s) > 0 else 0.0}
    if P["task"] == "multiclass":
        k = len(data.classes)
        return {"auroc": lambda y, s: mean_auroc(np.eye(k, dtype=int)[np.asarray(y, int).ravel()], s)}
    return {"auroc": mean_auroc}


def train_all(P: dict, data: Data, run_dir: Path) -> dict[str, Trained]:
    """One model per loss, from the same initial weights, data and schedule."""
    ds = datasets(P, data)
    n_out = _outputs(P, data)
    return {name: train_or_resume(P, name, fn, lambda: build_net(P, n_out), ds["train"], ds["val"], ds, run_dir,
                                  _val_metrics(P, data), name)
            for name, fn in loss_modules(P).items()}


# ------------------------------------------------------------------------------------------ evaluation


@dataclass
class Evaluation:
    task: str
    per_class: dict[str, pd.DataFrame]  # classification: loss -> per-class report
    overall: pd.DataFrame  # one row per loss
    y_test: np.ndarray  # classification: (N, C) 0/1 (multi-class: one-hot); score: (N,)
    scores_test: dict[str, np.ndarray]  # classification: logits (N, C); score: (N,)


def _onehot(data: Data, split: str) -> np.ndarray:
    t = data.splits[split].targets
    return np.eye(len(data.classes), dtype=int)[t] if data.index.task == "multiclass" else t.astype(int)


def evaluate(P: dict, runs: dict[str, Trained], data: Data) -> Evaluation:
    """Test-set metrics of every loss's model: per-class AUROC and F1 at the validation-tuned
    threshold (+ accuracy for multi-class), or SRCC / KRCC / PLCC / RMSE for scores."""
    per_class, rows, scores = {}, {}, {}
    if P["task"] == "score":
        y = data.splits["test"].targets.astype(float)
        for name, r in runs.items():
            s = np.ravel(r.logits["test"]).astype(float)
            m = iqa_metrics.iqa_report(s, y)
            rows[name] = {"Loss (own scale)": r.loss("test"), **{k.upper(): m[k] for k in ("srcc", "krcc", "plcc", "rmse")}}
            scores[name] = s
        return Evaluation("score", {}, pd.DataFrame(rows).T, y, scores)
    y_val, y_test = _onehot(data, "val"), _onehot(data, "test")
    for name, r in runs.items():
        zv, zt = r.logits["val"].astype(float), r.logits["test"].astype(float)
        pv, pt = (softmax(zv, 1), softmax(zt, 1)) if P["task"] == "multiclass" else (expit(zv), expit(zt))
        rep = multilabel_report(y_val, pv, y_test, pt, data.classes, rank_test=zt)
        per_class[name] = rep
        row = {"Loss (own scale)": r.loss("test"), "Avg AUROC": float(np.nanmean(rep["AUROC"])),
               "Avg F1": float(np.nanmean(rep["F1"]))}
        if P["task"] == "multiclass":
            row["Accuracy"] = float((zt.argmax(1) == data.splits["test"].targets).mean())
        rows[name] = row
        scores[name] = zt
    return Evaluation(P["task"], per_class, pd.DataFrame(rows).T, y_test, scores)


def comparison_note(P: dict) -> str:
    what = ("DeLong per class, a paired stratified bootstrap for the Mean" if P["task"] != "score" else
            "a paired bootstrap of the test images for the SRCC difference")
    return (f"Evidence: one trained model per loss (seed {P['seed']}). Each row is the difference of these two models "
            f"on this test set ({what}), over test-set sampling only; another seed could reverse it, so no Winner is "
            f"named. Holm family: every row of the table. For a verdict about the losses: lfakit sweep {EXPERIMENT} "
            "--seeds 0,1,2 and lfakit compare.")


def _score_comparison(P: dict, ev: Evaluation) -> pd.DataFrame:
    base = ev.scores_test[P["baseline"]]
    rows = []
    for name, s in ev.scores_test.items():
        if name == P["baseline"]:
            continue
        b = stats.paired_bootstrap_correlation(ev.y_test, base, s, "srcc", n_boot=P["n_boot"], seed=P["seed"])
        rows.append({"Method": name, "Δ SRCC": b["delta"], "95% CI": f"[{b['ci_low']:.4f}, {b['ci_high']:.4f}]",
                     "p (test set)": b["p_value"]})
    out = pd.DataFrame(rows).set_index("Method")
    out["p (Holm)"] = stats.holm(out["p (test set)"].to_numpy(float))
    return out


def tables(P: dict, ev: Evaluation) -> dict[str, pd.DataFrame]:
    """Per-class tables (classification), the overall table and the comparison with the baseline."""
    out = {f"per_class_{n}": report.per_class_table(rep) for n, rep in ev.per_class.items()}
    out["overall"] = report.round_floats(ev.overall.astype(float), 4)
    if len(ev.scores_test) > 1:
        if ev.task == "score":
            out["comparison"] = _score_comparison(P, ev)
        else:
            out["comparison"] = report.comparison_table(ev.y_test, ev.scores_test, P["baseline"], list(ev.per_class
                                                        [P["baseline"]].index), seed=P["seed"], n_boot=P["n_boot"])
    return out


def figures(P: dict, ev: Evaluation, runs: dict[str, Trained], run_dir: Path) -> dict:
    figs = {"history": report.plot_history({n: r.history for n, r in runs.items()})}
    if ev.task != "score":
        figs["per_class_auroc"] = report.plot_per_class_auroc_ci(ev.y_test, {n: {P["seed"]: s} for n, s in
                                                                             ev.scores_test.items()},
                                                                 list(next(iter(ev.per_class.values())).index))
    for name, fig in figs.items():
        report.save_figure(fig, run_dir / "figures" / f"{name}.png")
    return figs


HEADLINE_ABOUT = ("test split of your data; Loss (own scale): each loss's mean test loss in its own convention, not "
                  "comparable across losses; classification: Avg AUROC (per-class AUROC of the float64 logits, one "
                  "class against the rest), Avg F1 at per-class thresholds tuned on validation, Accuracy (multi-class, "
                  "argmax); score: SRCC, KRCC, PLCC (raw), RMSE; one model per loss; rounded to 4 decimals")


def save(P: dict, run_dir: Path, runs: dict[str, Trained], ev: Evaluation, data: Data,
         tables: dict[str, pd.DataFrame]) -> list[str]:
    """The run record: every loss's outputs on every split, metrics.json (the overall table as the
    headline), tables and the manifest."""
    pw = record.PredictionWriter()
    for name, r in runs.items():
        for split, sp in data.splits.items():
            t = sp.targets.reshape(len(sp.targets), -1)
            pw.add(name, split, P["seed"], sp.image_ids, t, r.logits[split].reshape(len(t), -1), r.sample_loss[split])
    built = loss_modules(P)
    methods = {n: {"config": repr(built[n]), "best_epoch": {int(P["seed"]): r.best_epoch},
                   **{k.lower(): float(v) for k, v in ev.overall.loc[n].items()}} for n, r in runs.items()}
    extra = {"task": P["task"], "classes": list(data.classes), "seeds": [P["seed"]], "baseline": P["baseline"],
             "data": data.index.source}
    return record.save_run(run_dir, EXPERIMENT, P, methods=methods,
                           headline=("overall", tables["overall"], HEADLINE_ABOUT), tables=tables, predictions=pw,
                           score_kind="score" if P["task"] == "score" else "logit", extra=extra)
