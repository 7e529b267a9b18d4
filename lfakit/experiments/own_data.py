"""Your data, your loss: compare registered losses on an image folder or a CSV index.

The notebook ``notebooks/own_data.ipynb`` calls, in order: :func:`setup` (threads, seed, the data
read and checked, run folder), :func:`load_data`, :func:`train_all`, :func:`evaluate`,
:func:`tables`, :func:`figures` and :func:`save`. This module holds only what is its own (the
layouts, the torchvision model by name, its summary); training, evaluation, comparison and the
predictions of the record are the general steps of :mod:`lfakit.experiments.steps`, the ones
the study experiments call: per-class AUROC / F1 and DeLong or the seed-level t with Holm, as
``chestxray_zlpr`` (multi-class and multi-label), or SRCC / PLCC and a paired bootstrap of the
SRCC difference with Holm, as ``iqa_losses`` (score).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.special import expit, softmax
from torch import nn

from lfakit import models, record, report
from lfakit.catalog import MODELS
from lfakit.data import folders
from lfakit.data.datasets import ArrayImageDataset, LabelImageDataset
from lfakit.experiments import steps
from lfakit.errors import TrainingError
from lfakit.experiments._shared import loss_modules, mean_auroc, open_checked_run, preflight_run, train_or_resume
from lfakit.metrics import iqa as iqa_metrics
from lfakit.schemas.own_data import EXPERIMENT, check_inputs, read

SPLITS = folders.SPLITS


def data_folder(P: dict) -> Path:
    return Path(P["data_dir"]).expanduser() if P["data_dir"] else folders.embedded_digits_folder(P["cache_dir"] or None)


def preflight(P: dict, inputs_checked: bool = False) -> None:
    """The data (read and split, torch-free), the losses, the device and any pretrained weights."""
    preflight_run(P, None if inputs_checked else check_inputs, weights=P["pretrained"] and P["model"] in MODELS)


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


class _ScoredImages(ArrayImageDataset):
    """Scores as ``y`` and the ratings' SD (the CSV's ``sd_column``) as ``std``, which the engine
    passes to the loss (the IQA losses take ``std=``; ``fidelity`` uses it); items are dicts."""

    def __init__(self, images, targets, sd, **kw):
        super().__init__(images, targets, **kw)
        self.sd = np.asarray(sd, dtype=np.float64)

    def get(self, index, generator=None):
        x, y, i = super().get(index, generator)
        return {"x": x, "y": y, "index": i, "std": torch.tensor(self.sd[i])}


def _splits(data: Data) -> dict[str, tuple]:
    return {s: (sp.images, sp.targets) for s, sp in data.splits.items()}


def _val_metrics(P: dict, data: Data) -> dict:
    if P["task"] == "score":
        return {"srcc": lambda y, s: iqa_metrics.srcc(np.ravel(s), np.ravel(y)) if np.ptp(s) > 0 else 0.0}
    if P["task"] == "multiclass":
        k = len(data.classes)
        return {"auroc": lambda y, s: mean_auroc(np.eye(k, dtype=int)[np.asarray(y, int).ravel()], s)}
    return {"auroc": mean_auroc}


def train_all(P: dict, data: Data, run_dir: Path) -> dict:
    """One model per loss (and training seed), from the same initial weights, data and schedule:
    ``{loss: {seed: Trained}}`` (classification) or ``{loss: ScoreRun}`` (score; a loss whose
    training the engine stops is kept as failed, so the others still compare)."""
    n_out = _outputs(P, data)
    build = lambda: build_net(P, n_out)  # noqa: E731
    if P["task"] != "score":
        cls = LabelImageDataset if P["task"] == "multiclass" else ArrayImageDataset
        train_on, predict_on = steps.image_datasets(P, _splits(data), _channels(P), cls)
        return steps.train_losses(P, build, train_on, predict_on, run_dir, _val_metrics(P, data))
    ds = {s: _score_images(P, sp) for s, sp in data.splits.items() if s != "train"}  # what is predicted
    train = _score_images(P, data.splits["train"], augment=P["augment"])
    runs = {name: steps.train_scored(P, name, lambda n=name, f=fn: train_or_resume(
        P, n, f, build, train, ds["val"], ds, run_dir, _val_metrics(P, data), n, sample_losses=False), np.ravel)
        for name, fn in loss_modules(P).items()}
    if not any(r.ok for r in runs.values()):
        raise TrainingError("every loss failed to train: " + "; ".join(f"{n}: {r.status}" for n, r in runs.items()))
    return runs


def _score_images(P: dict, sp: folders.Split, augment: bool = False) -> ArrayImageDataset:
    if sp.sd is None:  # read a batch at a time
        return ArrayImageDataset(sp.images, sp.targets, channels=_channels(P), augment=augment)
    return _ScoredImages(sp.images, sp.targets, sp.sd, channels=_channels(P), augment=augment)


# ------------------------------------------------------------------------------------------ evaluation


@dataclass
class Evaluation:
    task: str
    overall: pd.DataFrame  # one row per loss
    classification: steps.ClassEvaluation | None  # multi-class and multi-label
    score_runs: dict | None  # score: loss -> ScoreRun
    y_test: np.ndarray  # classification: (N, C) 0/1 (multi-class: one-hot); score: (N,)


def _onehot(data: Data, split: str) -> np.ndarray:
    t = data.splits[split].targets
    return np.eye(len(data.classes), dtype=int)[t] if data.index.task == "multiclass" else t.astype(int)


def evaluate(P: dict, runs: dict, data: Data) -> Evaluation:
    """Test-set metrics of every loss's models: per-class AUROC and F1 at the validation-tuned
    threshold, averaged over training seeds (+ accuracy for multi-class), or SRCC / KRCC / PLCC
    (raw and logistic) / RMSE for scores."""
    if P["task"] == "score":
        y = data.splits["test"].targets.astype(float)
        return Evaluation("score", steps.score_metrics_table(runs, y).set_index("Loss"), None, runs, y)
    prob = (lambda z: softmax(z, 1)) if P["task"] == "multiclass" else expit
    ev = steps.evaluate_classification(runs, _onehot(data, "val"), _onehot(data, "test"), data.classes, prob)
    rows = {}
    for name, seeds in runs.items():
        row = {"Loss (own scale)": ev.test_loss[name], "Avg AUROC": ev.average(name, "AUROC"),
               "Avg F1": ev.average(name, "F1")}
        if P["task"] == "multiclass":
            t = data.splits["test"].targets
            row["Accuracy"] = float(np.mean([(r.logits["test"].argmax(1) == t).mean() for r in seeds.values()]))
        rows[name] = row
    return Evaluation(P["task"], pd.DataFrame(rows).T, ev, None, ev.y_test)


def comparison_note(P: dict) -> str:
    if P["task"] != "score":
        return steps.comparison_note(P, EXPERIMENT)
    return ("Evidence: one trained model per loss (seed " + str(P["seed"]) + "). Each row is the difference of these two "
            "models on this test set (a paired bootstrap of the test images for the SRCC difference), over test-set "
            "sampling only; another seed could reverse it, so no Winner is named. Holm family: every row of the table. "
            f"For a verdict about the losses: lfakit sweep {EXPERIMENT} --seeds 0,1,2 and lfakit compare.")


def tables(P: dict, ev: Evaluation) -> dict[str, pd.DataFrame]:
    """Per-class tables (classification), the overall table and the comparison with the baseline."""
    if ev.task == "score":
        out = {"overall": ev.overall}
        if len(ev.score_runs) > 1:
            out["comparison"] = steps.score_comparison_table(P, ev.score_runs, ev.y_test)
        return out
    c = ev.classification
    seeded = len(steps.training_seeds(P)) > 1
    out = {}
    for n, rep in c.per_class.items():
        t = report.per_class_table(rep)
        out[f"per_class_{n}"] = t.rename(columns={k: f"{k}, seed mean" for k in t.columns if seeded and k.startswith("Threshold")})
    out["overall"] = report.round_floats(ev.overall.astype(float), 4)
    if len(c.per_class) > 1:
        out["comparison"] = steps.classification_comparison(P, c)
    return out


def figures(P: dict, ev: Evaluation, runs: dict, run_dir: Path) -> dict:
    if ev.task == "score":
        figs = {"history": report.plot_history({n: r.history for n, r in runs.items() if r.ok})}
    else:
        figs = {"history": report.plot_history({n: steps.first(r).history for n, r in runs.items()}),
                "per_class_auroc": report.plot_per_class_auroc_ci(ev.y_test, ev.classification.logits_by_seed,
                                                                 ev.classification.classes)}
    for name, fig in figs.items():
        report.save_figure(fig, run_dir / "figures" / f"{name}.png")
    return figs


HEADLINE_ABOUT = ("test split of your data; classification: Loss (own scale), each loss's mean test loss in its own "
                  "convention, not comparable across losses, Avg AUROC (per-class AUROC of the float64 logits, one "
                  "class against the rest), Avg F1 at per-class thresholds tuned on validation, Accuracy (multi-class, "
                  "argmax), each per-class metric the mean over training seeds; score: SRCC, KRCC (tau-b), PLCC raw "
                  "and after the 4-parameter logistic map, RMSE after that map; rounded to 4 decimals")


def save(P: dict, run_dir: Path, runs: dict, ev: Evaluation, data: Data,
         tables: dict[str, pd.DataFrame]) -> list[str]:
    """The run record: classification, every loss's logits and per-image losses on every split
    and seed; score, every trained loss's scores on val and test with the SD where the CSV has
    one (no per-image losses: batch losses have none); metrics.json (the overall table as the
    headline), tables and the manifest."""
    pw = record.PredictionWriter()
    extra = {"task": P["task"], "classes": list(data.classes), "seeds": steps.training_seeds(P),
             "baseline": P["baseline"], "data": data.index.source}
    if ev.task == "score":
        built = loss_modules(P)
        for name, r in runs.items():
            if r.ok:
                for split in ("val", "test"):
                    sp = data.splits[split]
                    pw.add(name, split, P["seed"], sp.image_ids, sp.targets, r.scores[split], None,
                           **({} if sp.sd is None else {"sd": sp.sd}))
        methods = {n: {"config": repr(built[n]), "status": r.status, "best_epoch": {int(P["seed"]): r.best_epoch}}
                   for n, r in runs.items()}
        extra["sample_loss"] = "not written: the score losses include batch losses without a per-image value"
    else:
        steps.add_predictions(pw, runs, {s: (sp.image_ids, sp.targets.reshape(len(sp.targets), -1))
                                         for s, sp in data.splits.items()})
        methods = steps.method_records(P, runs)
    for n in methods:
        if n in ev.overall.index:
            methods[n].update({k.lower(): (float(v) if isinstance(v, (int, float, np.floating)) else v)
                               for k, v in ev.overall.loc[n].items()})
    return record.save_run(run_dir, EXPERIMENT, P, methods=methods, headline=("overall", tables["overall"], HEADLINE_ABOUT),
                           tables=tables, predictions=pw, score_kind="score" if P["task"] == "score" else "logit",
                           extra=extra)
