"""No-reference IQA on KonIQ-10k: the study's training losses and the kit's on the same quality model.

The IQA loss study planned L1, L2, "SRCC", Rank and Fidelity for a Swin-B quality model (four
stages' features, attention fusion) on KonIQ-10k, and ran L1 only (SRCC 0.9354 / PLCC 0.9448).
The kit trains every loss of ``P['losses']`` (smoke default: ``l1, l2, plcc, srcc, rank,
fidelity``; the paper profile adds ``norm_in_norm``) with the same data, crops, schedule and initial weights, and compares each with
the baseline (``l1``): the test-set difference of these models (one per loss) with its paired
bootstrap interval. One seed names no Winner about the losses; a verdict needs two or more seeds
per loss (``lfakit sweep iqa_losses --seeds 0,1,2`` and ``lfakit compare`` on the sweep folder).

The notebook ``notebooks/iqa_losses.ipynb`` calls, in order: :func:`setup`, :func:`load_data`,
:func:`data_summary`, :func:`train_all`, :func:`tables`, :func:`figures` and :func:`save`.

Choices the study leaves open (documented in the notebook too):

* The study's "SRCC loss" formula, ``1 - Σ(v-v̄)(p-p̄) / sqrt(Σ(v-v̄)² Σ(p-p̄)²)``, is one minus
  the Pearson correlation of the raw scores: the kit's ``plcc`` loss. The kit's ``srcc`` is a
  Spearman loss proper (Pearson of soft ranks); both are trained.
* Training crops: ``train_patch_num`` random crops of every image per epoch (mirrored at random
  with ``hflip``); test: ``test_patch_num`` crops per image, the mean of their predictions is the
  image's score (:func:`image_scores`); ``test_crop`` random (seeded, fixed) or grid positions.
* The incomplete last training batch is dropped (a correlation of one image is undefined); the
  best epoch is the best validation SRCC of the per-image scores (a batch loss has no
  batching-free validation value); a loss whose training diverges is reported as failed and the
  others go on.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lfakit import models, record, report, stats
from lfakit.data import kadid, koniq
from lfakit.data.patches import PatchDataset
from lfakit.errors import TrainingError
from lfakit.experiments import steps
from lfakit.experiments._shared import loss_modules, model_options, open_checked_run, preflight_run, train_or_resume
from lfakit.experiments.steps import ScoreRun as Run
from lfakit.metrics import iqa as iqa_metrics
from lfakit.schemas.iqa_losses import EXPERIMENT, STUDY_LOSSES, check_inputs, holm_families

SPLITS = ("train", "val", "test")
POINTWISE = ("l1", "l2")
RANKING_AWARE = ("plcc", "srcc", "rank", "fidelity")
PAIRWISE = ("rank", "fidelity")
FAMILY = {"l1": "point-wise", "l2": "point-wise", "plcc": "correlation (set-wise)", "srcc": "rank correlation (set-wise)",
          "rank": "pairwise ranking", "fidelity": "pairwise probabilistic", "norm_in_norm": "normalised regression (set-wise)"}
STUDY_NAME = {"l1": "L1 (MAE)", "l2": "L2 (MSE)", "plcc": "the study's \"SRCC\" formula (PLCC)", "srcc": "SRCC (soft ranks)",
              "rank": "Rank", "fidelity": "Pairwise fidelity", "norm_in_norm": "Norm-in-Norm (not in the study)"}


# --------------------------------------------------------------------------------------------
# setup and data
# --------------------------------------------------------------------------------------------


def _cache_dir(P: dict):
    return P["cache_dir"] or None


def preflight(P: dict, inputs_checked: bool = False) -> None:
    """What the run needs beyond its parameters: a readable KonIQ-10k folder (every listed image
    present, the CSV's columns and values checked) and the pretrained weights. ``lfakit run``
    calls it before making a run folder; so does :func:`setup`."""
    # check_inputs is torch-free: device, the KonIQ-10k folder and its image files
    preflight_run(P, None if inputs_checked else check_inputs, weights=False)
    warn_if_cpu(P)
    if P["pretrained"]:
        models.ensure_weights(P["model"])


_cpu_warned: set[str] = set()


def cpu_warning(P: dict, device_type: str) -> str | None:
    """The warning for the study's model (``swin_b_iqa``, the paper profile's) about to train on a
    CPU, or None: what the run would cost there and that it is meant for a GPU."""
    if P["model"] != "swin_b_iqa" or device_type != "cpu":
        return None
    n = len(set(P["losses"]))
    train = koniq.OFFICIAL_SIZES["training"]
    if P["max_images"]:
        train = min(train, round(P["max_images"] * train / sum(koniq.OFFICIAL_SIZES.values())))
    crops = P["epochs"] * P["train_patch_num"] * train
    return (f"iqa_losses: no GPU found, so the study's Swin-B model (swin_b_iqa) would train on the CPU. This "
            f"configuration is meant for a GPU: {n} losses x {crops:,.0f} training crops of {P['patch_size']} px each; the "
            f"study expected 1.7-2.0 h per loss on its GPU, and a CPU trains Swin-B some 50-100x slower, i.e. days per "
            f"loss. Run it on a CUDA machine, or try the pipeline with --profile smoke.")


def warn_if_cpu(P: dict) -> None:
    """Warn once per process when :func:`cpu_warning` applies (``device`` resolved as the engine does)."""
    from lfakit.engine import select_device

    msg = cpu_warning(P, select_device(P["device"]).type)
    if msg and msg not in _cpu_warned:
        _cpu_warned.add(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)


def setup(P: dict) -> Path:
    """Fix threads and seeds, check inputs before any work, and open the run folder."""
    return open_checked_run(P, EXPERIMENT, preflight)


@dataclass
class Data:
    """KonIQ-10k's train / val / test splits and, in ``cross``, each cross-dataset test set
    (``test_datasets``) as one split, never used for training or model selection."""

    splits: dict[str, koniq.Split]
    folder: Path
    embedded: bool
    official_split: bool
    cross: dict[str, koniq.Split] = field(default_factory=dict)
    cross_embedded: dict[str, bool] = field(default_factory=dict)


#: cross-dataset test sets: name -> (folder parameter, the set's name in tables)
CROSS_SETS = {"kadid10k": ("kadid_dir", "KADID-10k")}


def cross_folder(P: dict, name: str) -> Path:
    """The folder of cross-dataset test set ``name``: its parameter, or the embedded default."""
    param, _ = CROSS_SETS[name]
    if P[param]:
        return Path(P[param]).expanduser()
    return kadid.embedded_kadid_dir(_cache_dir(P))


def load_cross(P: dict) -> tuple[dict[str, koniq.Split], dict[str, bool]]:
    """Each set of ``test_datasets`` as one split of uint8 images at ``image_size`` (a seeded sample
    of at most ``max_images`` when that is set), through its loader (its own scale: SRCC and KRCC need no rescaling), and whether it is the embedded default."""
    out, embedded = {}, {}
    for name in dict.fromkeys(P["test_datasets"]):
        out[name] = kadid.load_kadid(cross_folder(P, name), _cache_dir(P), tuple(P["image_size"]), P["seed"],
                                     max_images=P["max_images"] or None, progress=P.get("progress", True))
        embedded[name] = not P[CROSS_SETS[name][0]]
    return out, embedded


def data_folder(P: dict) -> Path:
    """``data_dir``, or the embedded default (generated once into the cache, KonIQ-10k format)."""
    if P["data_dir"]:
        return Path(P["data_dir"]).expanduser()
    from lfakit.data.koniq_embedded import embedded_koniq_dir

    return embedded_koniq_dir(_cache_dir(P))


def load_data(P: dict) -> Data:
    """The train / val / test splits through the KonIQ-10k loader, images from the RGB cache."""
    folder = data_folder(P)
    idx = koniq.load_index(folder, P["mos_scale"], P["seed"], P["image_dir"] or None, P["max_images"] or None)
    splits = koniq.load_koniq(folder, _cache_dir(P), tuple(P["image_size"]), P["mos_scale"], P["seed"],
                              P["image_dir"] or None, P["max_images"] or None, progress=P.get("progress", True))
    cross, cross_embedded = load_cross(P)
    return Data(splits, folder, not P["data_dir"], idx.official_split, cross, cross_embedded)


def data_summary(data: Data) -> pd.DataFrame:
    """Images per split and their MOS / opinion-SD statistics."""
    rows = []
    for s in SPLITS:
        sp = data.splits[s]
        rows.append({"split": s, "images": len(sp.mos), "MOS mean": sp.mos.mean(), "MOS std": sp.mos.std(),
                     "MOS min": sp.mos.min(), "MOS max": sp.mos.max(), "SD mean": sp.sd.mean()})
    for name, sp in data.cross.items():
        rows.append({"split": f"{name} (cross-dataset test)", "images": len(sp.mos), "MOS mean": sp.mos.mean(),
                     "MOS std": sp.mos.std(), "MOS min": sp.mos.min(), "MOS max": sp.mos.max(), "SD mean": sp.sd.mean()})
    return report.round_floats(pd.DataFrame(rows), 3)


def datasets(P: dict, data: Data) -> dict[str, PatchDataset]:
    """Training crops at fresh random positions; validation / test crops at fixed positions."""
    p = P["patch_size"]
    tr = data.splits["train"]
    out = {"train": PatchDataset(tr.images, tr.mos, tr.sd, p, P["train_patch_num"], "fresh",
                                 hflip_p=0.5 if P["hflip"] else 0.0)}
    for s in ("val", "test"):
        sp = data.splits[s]
        out[s] = PatchDataset(sp.images, sp.mos, sp.sd, p, P["test_patch_num"], P["test_crop"], seed=P["seed"])
    for name, sp in data.cross.items():
        out[name] = PatchDataset(sp.images, sp.mos, sp.sd, p, P["test_patch_num"], P["test_crop"], seed=P["seed"])
    return out


def image_scores(patch_scores, patches_per_image: int) -> np.ndarray:
    """Each image's score: the mean prediction over its ``patches_per_image`` test crops (items
    of a :class:`PatchDataset` in order: image-major)."""
    s = np.asarray(patch_scores, dtype=np.float64).reshape(-1)
    if s.size % patches_per_image:
        raise ValueError(f"{s.size} patch scores are not a whole number of images of {patches_per_image} patches")
    return s.reshape(-1, patches_per_image).mean(axis=1)


def val_metrics(patches_per_image: int) -> dict:
    """``val_srcc`` / ``val_plcc`` of the per-image scores (patch predictions averaged)."""
    def per_image(targets, scores):
        return image_scores(targets, patches_per_image), image_scores(scores, patches_per_image)

    def srcc(targets, scores):
        mos, s = per_image(targets, scores)
        return iqa_metrics.srcc(s, mos) if np.ptp(s) > 0 else 0.0

    def plcc(targets, scores):
        mos, s = per_image(targets, scores)
        return iqa_metrics.plcc(s, mos) if np.ptp(s) > 0 else 0.0

    return {"srcc": srcc, "plcc": plcc}


def build_model(P: dict, head_bias: float | None = None):
    """The registry's model with one output: the crop's quality score; ``head_bias`` (the training
    MOS mean, with ``head_bias_init``) starts the output Linear's bias."""
    m = models.build_model(P["model"], 1, pretrained=P["pretrained"], in_chans=3, precision=P["precision"],
                           **model_options(P))
    if head_bias is not None:
        models.start_head_bias(m, head_bias)
    return m


def head_bias(P: dict, train: PatchDataset) -> float | None:
    """The head's starting bias: the training images' MOS mean (on ``mos_scale``) with
    ``head_bias_init``, else None (the layer's own initialisation)."""
    return float(np.mean(train.mos)) if P["head_bias_init"] else None


def fit_overrides(P: dict) -> dict:
    """Engine settings beyond the parameters: the last incomplete batch dropped, no validation loss
    (batch losses), and, with ``head_lr_mult`` != 1, the model's backbone (trained at ``lr``; every
    other parameter at ``lr x head_lr_mult``)."""
    out = {"drop_last": True, "val_loss": False}
    if P["head_lr_mult"] != 1.0:
        out["backbone_module"] = models.IQA_BACKBONES[P["model"]]
    return out


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def train_one(P: dict, name: str, loss_fn, ds: dict[str, PatchDataset], run_dir: Path) -> Run:
    """Train a fresh model with one loss (or reload it on ``--resume``); score val, test and each
    cross-dataset test set (each image: the mean of its crops' predictions). A training that
    diverges is kept as failed (:func:`lfakit.experiments.steps.train_scored`)."""
    k = P["test_patch_num"]

    def fit():
        bias = head_bias(P, ds["train"])
        return train_or_resume(P, name, loss_fn, lambda: build_model(P, bias), ds["train"], ds["val"],
                               {s: d for s, d in ds.items() if s != "train"}, run_dir, val_metrics(k), name,
                               fit_overrides=fit_overrides(P), sample_losses=False)

    return steps.train_scored(P, name, fit, lambda z: image_scores(z, k))


def train_all(P: dict, data: Data, run_dir: Path) -> dict[str, Run]:
    """One model per loss, each from the same initial weights, crops and schedule."""
    ds = datasets(P, data)
    return {name: train_one(P, name, fn, ds, run_dir) for name, fn in loss_modules(P).items()}


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def _fmt_time(seconds: float) -> str:
    # fixed width, so that a table's layout does not depend on the machine's speed (nbval masks the digits)
    return "n/a" if not np.isfinite(seconds) else f"{seconds:8.1f} s"


def metrics_table(runs: dict[str, Run], data: Data, split: str = "test") -> pd.DataFrame:
    """Per loss on ``split`` (a KonIQ-10k split or a cross-dataset test set): SRCC, KRCC (tau-b),
    PLCC raw and after the 4-parameter logistic map, RMSE after that map (MOS scale), and how the
    fit went (:func:`lfakit.experiments.steps.score_metrics_table`)."""
    mos = data.splits[split].mos if split in data.splits else data.cross[split].mos
    return steps.score_metrics_table(runs, mos, split)


#: said where a verdict about the losses would go: what one model per loss cannot tell
NO_VERDICT = "no verdict about the losses (one model each)"


def verdict_how(P: dict) -> str:
    """How to get a verdict about the losses: two or more trained models (seeds) per loss,
    compared by ``lfakit compare``'s seed-level test."""
    return (f"a verdict needs two or more seeds per loss: lfakit sweep {EXPERIMENT} --seeds 0,1,2, then "
            f"lfakit compare results/{EXPERIMENT}/sweeps/<sweep-id> --metric srcc --baseline {P['baseline']}")


def comparison_table(P: dict, runs: dict[str, Run], data: Data) -> pd.DataFrame:
    """Every trained loss against the baseline, one trained model each
    (:func:`lfakit.experiments.steps.score_comparison_table`): both models' test SRCC, ``Δ SRCC
    (these models)`` with the paired-bootstrap interval and p over the test images, and the
    Holm-adjusted p within the challenger's ``Holm family``: ``study`` (the study's losses,
    :data:`STUDY_LOSSES`) or ``kit additions`` (the losses the kit trains beyond the study, such
    as ``srcc`` and ``norm_in_norm``), so that adding a loss to the run does not change the
    study's comparisons. These tests cover test-set sampling only, so the table has no Winner
    column (:func:`verdict_how`)."""
    return steps.score_comparison_table(P, runs, data.splits["test"].mos, lambda n: holm_family(P, n))


def holm_family(P: dict, name: str) -> str:
    """The Holm family of a comparison with the baseline: ``study`` when both losses are among
    the study's (:data:`STUDY_LOSSES`), else ``kit additions`` (:func:`holm_families`)."""
    return "study" if name in STUDY_LOSSES and P["baseline"] in STUDY_LOSSES else "kit additions"


def _holm_families(P: dict) -> str:
    """How many comparisons each Holm family of this run holds, in words."""
    return "; ".join(f"{fam}: {len(ns)} ({', '.join(ns)})" for fam, ns in holm_families(P).items()) or "none"


def _delta_cell(row) -> str:
    """``Δ [low, high]`` of one comparison row, or ``n/a``: a difference of these models, no verdict mark."""
    if not np.isfinite(row["Δ SRCC (these models)"]):
        return "n/a"
    d, lo, hi = (round(float(row[c]), 4) + 0.0 for c in ("Δ SRCC (these models)", "CI low (test set)", "CI high (test set)"))
    return f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def _p_cell(p: float) -> str:
    return "n/a" if not np.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def delta_column(P: dict) -> str:
    """The Results Summary Table's difference column."""
    return f"Δ SRCC vs {P['baseline']}, these models [95% CI, test set]"


def cross_column(name: str) -> str:
    """The Results Summary Table's column of cross-dataset test set ``name``."""
    return f"SRCC on {CROSS_SETS[name][1]} (cross-dataset)"


def summary_table(P: dict, runs: dict[str, Run], metrics: pd.DataFrame, comp: pd.DataFrame,
                  cross: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """The study's Results Summary Table for every loss: Loss, SRCC, PLCC (raw), the Δ SRCC of this
    loss's model and the baseline's with its 95% test-set bootstrap interval and Holm p (test set
    only), each cross-dataset test set's SRCC (``cross``: set name -> its :func:`metrics_table`; the
    model trained and selected on KonIQ-10k, tested on that set as it is), training time and time
    per epoch on this machine, and status. The study's Winner
    column is left out: with one trained model per loss no test covers the retraining noise."""
    m = metrics.set_index("Loss")
    c = comp.set_index("Challenger")
    rows = []
    for name, r in runs.items():
        if name == P["baseline"]:
            delta, p = "baseline", "-"
        elif name in c.index:
            delta, p = _delta_cell(c.loc[name]), _p_cell(c.loc[name, "p (Holm)"])
        else:
            delta, p = "n/a", "n/a"
        row = {"Loss": name, "As in the study": STUDY_NAME.get(name, name), "SRCC": m.loc[name, "SRCC"],
               "PLCC": m.loc[name, "PLCC (raw)"], delta_column(P): delta, "p (Holm, test set)": p}
        for set_name, table in (cross or {}).items():
            row[cross_column(set_name)] = table.set_index("Loss").loc[name, "SRCC"]
        row.update({"Time": _fmt_time(r.train_seconds), "Time/epoch": _fmt_time(r.seconds_per_epoch), "Status": r.status})
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_note(P: dict, data: Data) -> str:
    """What the comparison's evidence covers (printed beside the tables)."""
    n = len(data.splits["test"].mos)
    note = (f"Evidence: one trained model per loss (seed {P['seed']}), {n} test images. Δ SRCC (these models): the "
            f"challenger's model minus the {P['baseline']} model, with the percentile 95% interval (not adjusted for "
            f"multiplicity) and the two-sided p of one paired bootstrap of the test images ({P['n_boot']} resamples); "
            f"p (Holm): Holm within each family of comparisons with {P['baseline']} ({_holm_families(P)}), for display; the error rate is controlled within each family, not across the table. These cover "
            f"test-set sampling only, not the retraining noise (another seed of either loss), so they compare these "
            f"models and name no Winner about the losses; {verdict_how(P)} (a test over the seeds, retraining noise included). "
            "Times are this machine's wall clock.")
    for name, sp in data.cross.items():
        note += (f" {cross_column(name)}: each loss's model, trained and selected on KonIQ-10k, tested on {len(sp.mos)} "
                 f"{CROSS_SETS[name][1]} images on that set's own scale (a rank correlation needs no rescaling); no test "
                 "compares these columns.")
        if data.cross_embedded.get(name):
            note += (f" {CROSS_SETS[name][1]} here is the embedded synthetic KADID-format set: it tests the pipeline and "
                     "says nothing about KADID-10k.")
    if data.embedded:
        note += (" Data: the embedded synthetic KonIQ-format set (distorted sample photos, modelled opinion scores): "
                 "these numbers test the pipeline and say nothing about KonIQ-10k.")
    return note


def _paired(P, data, runs, a: str, b: str) -> dict:
    return stats.paired_bootstrap_correlation(data.splits["test"].mos, runs[a].scores["test"], runs[b].scores["test"],
                                              "srcc", P["n_boot"], P["seed"])


def _models_differ(d: dict, p: float, alpha: float, a: str, b: str) -> str:
    """What the test set says about the ``b`` model against the ``a`` model: the size and sign of
    the difference and whether it exceeds the test-set noise; never which loss is better."""
    if not (np.isfinite(d["delta"]) and np.isfinite(p)):
        return f"the {b} and {a} models: undetermined"
    noise = "beyond" if p < alpha else "within"
    if d["delta"] == 0:
        return f"the {b} model's test SRCC equals the {a} model's"
    return (f"the {b} model's test SRCC is {abs(d['delta']):.4f} {'higher' if d['delta'] > 0 else 'lower'} than the "
            f"{a} model's ({noise} the test-set noise)")


def _ev(d: dict, p: float, holm: bool) -> str:
    return (f"Δ SRCC {d['delta']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], "
            f"{'Holm ' if holm else ''}p={p:.3f}")


def key_questions(P: dict, runs: dict[str, Run], data: Data, metrics: pd.DataFrame, comp: pd.DataFrame) -> pd.DataFrame:
    """The study's five key questions, each answered from this run's numbers with its evidence.

    With one trained model per loss no answer says that a loss is better: each gives the
    test-set difference of these models, whether it exceeds the test-set noise, and that a
    verdict about the losses needs two or more seeds (:func:`verdict_how`). The comparisons with
    the baseline use the Holm-adjusted p of :func:`comparison_table`; a comparison outside that
    family (best vs runner-up, best ranking-aware vs best point-wise, each group's best chosen on
    validation) is one paired bootstrap, said so in its evidence."""
    base, alpha = P["baseline"], P["alpha"]
    ok = [n for n, r in runs.items() if r.ok]
    c = comp.set_index("Challenger")
    srcc = metrics.set_index("Loss")["SRCC"]
    rows = []
    if data.embedded:
        rows.append(["What do these answers say about KonIQ-10k?",
                     "nothing: they come from the embedded synthetic KonIQ-format set (distorted sample photos, "
                     "modelled opinion scores), which tests the pipeline",
                     "data_dir is empty: the embedded default; set data_dir to a KonIQ-10k folder for answers about it"])

    def vs_base(name):
        row = c.loc[name]
        d = {"delta": row["Δ SRCC (these models)"], "ci_low": row["CI low (test set)"],
             "ci_high": row["CI high (test set)"]}
        return _models_differ(d, row["p (Holm)"], alpha, base, name), _ev(d, row["p (Holm)"], True)

    # 1. highest SRCC
    q1 = "Which loss achieves the highest SRCC?"
    if len(ok) >= 2:
        order = sorted(ok, key=lambda n: -srcc[n])
        best, second = order[0], order[1]
        d = _paired(P, data, runs, second, best)
        rows.append([q1, f"of these models, the {best} model has the highest test SRCC ({srcc[best]:.4f}), then the "
                         f"{second} model ({srcc[second]:.4f}); the pair was picked on the test set, so its p is a "
                         f"post-hoc, unadjusted one; {NO_VERDICT}; {verdict_how(P)}",
                     _ev(d, d["p_value"], False) + " (test set only: one paired bootstrap, best vs runner-up, "
                                                   "outside the Holm family)"])
    else:
        rows.append([q1, "needs two trained losses", "-"])
    # 2. SRCC loss vs L1
    q2 = f"Is directly optimising SRCC better than {base}?"
    parts, evid = [], []
    for name in ("plcc", "srcc"):
        if name in ok and name in c.index and runs[base].ok:
            v, e = vs_base(name)
            label = "the study's SRCC formula (plcc)" if name == "plcc" else "a true Spearman loss (srcc)"
            parts.append(f"{label}: {v}")
            evid.append(f"{name}: {e}")
    rows.append([q2, f"{NO_VERDICT}; " + "; ".join(parts) if parts else "train plcc or srcc and the baseline to answer",
                 "; ".join(evid) + " (test set only)" if evid else "-"])
    # 3. ranking-aware vs point-wise, each group's best chosen on validation
    q3 = "Do ranking-aware losses (SRCC, PLCC, Rank, Fidelity) outperform point-wise ones (L1, L2)?"
    rank_ok = [n for n in RANKING_AWARE if n in ok]
    point_ok = [n for n in POINTWISE if n in ok]
    if rank_ok and point_ok:
        vmos = data.splits["val"].mos
        pick = {g: max(ns, key=lambda n: iqa_metrics.srcc(runs[n].scores["val"], vmos)) for g, ns in
                (("rank", rank_ok), ("point", point_ok))}
        d = _paired(P, data, runs, pick["point"], pick["rank"])
        rows.append([q3, f"{NO_VERDICT}; of each group's best model on validation, "
                         + _models_differ(d, d["p_value"], alpha, pick["point"], pick["rank"]),
                     _ev(d, d["p_value"], False) + f"; {pick['rank']} vs {pick['point']} (test set only: one paired "
                                                   "bootstrap, outside the Holm family)"])
    else:
        rows.append([q3, "needs at least one loss of each group", "-"])
    # 4. cost vs gain
    q4 = "What is the trade-off between complexity and performance?"
    if runs[base].ok and len(ok) >= 2:
        t0 = runs[base].seconds_per_epoch
        tested = [n for n in ok if n != base and n in c.index and np.isfinite(c.loc[n, "p (Holm)"])]
        beyond = [n for n in tested if c.loc[n, "p (Holm)"] < alpha]
        higher = [n for n in beyond if c.loc[n, "Δ SRCC (these models)"] > 0]
        lower = [n for n in beyond if c.loc[n, "Δ SRCC (these models)"] < 0]
        cost = ", ".join(f"{n} {runs[n].seconds_per_epoch / t0:6.2f}× the time of {base}" for n in ok if n != base)
        ans = (f"performance: {NO_VERDICT}; models whose test SRCC differs from the {base} model's beyond the test-set "
               f"noise (Holm): higher: {', '.join(higher) or 'none'}; lower: {', '.join(lower) or 'none'}")
        rows.append([q4, ans, f"time per epoch on this machine: {cost}"])
    else:
        rows.append([q4, "needs the baseline and another trained loss", "-"])
    # 5. pairwise losses
    q5 = "Should we use pairwise losses for IQA?"
    pw = [n for n in PAIRWISE if n in ok and n in c.index]
    if pw and runs[base].ok:
        verdicts = [vs_base(n) for n in pw]
        rows.append([q5, f"{NO_VERDICT}; " + "; ".join(v for v, _ in verdicts),
                     "; ".join(f"{n}: {e}" for n, (_, e) in zip(pw, verdicts)) + " (test set only)"])
    else:
        rows.append([q5, "train rank or fidelity and the baseline to answer", "-"])
    return pd.DataFrame(rows, columns=["Question", "Answer", "Evidence"])


def tables(P: dict, runs: dict[str, Run], data: Data) -> dict[str, pd.DataFrame]:
    """Test and validation metrics, each cross-dataset set's metrics (``metrics_<name>``), the
    comparison, the Results Summary Table and the answers."""
    metrics = metrics_table(runs, data, "test")
    comp = comparison_table(P, runs, data)
    cross = {name: metrics_table(runs, data, name) for name in data.cross}
    return {"metrics_test": metrics, "metrics_val": metrics_table(runs, data, "val"),
            **{f"metrics_{name}": t for name, t in cross.items()}, "comparison": comp,
            "summary": summary_table(P, runs, metrics, comp, cross),
            "key_questions": key_questions(P, runs, data, metrics, comp)}


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------


def plot_scatter(runs: dict[str, Run], mos: np.ndarray, metrics: pd.DataFrame, scale: str) -> Figure:
    """Predicted score against MOS on test, one panel per loss (seaborn), with the fitted
    4-parameter logistic (the map behind PLCC (logistic)) and the marginal distributions: the
    predictions' above (a collapsed or bimodal prediction shows there), the MOS at the right.
    Each panel's x axis is that loss's own scale."""
    import seaborn as sns

    names = [n for n, r in runs.items() if r.ok]
    ncols = min(4, max(1, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    m = metrics.set_index("Loss")
    bins = np.histogram_bin_edges(mos, bins=12)
    with report.style():
        fig = plt.figure(figsize=(min(report.FIG_WIDTH, 2.45 * ncols + 0.3), 2.75 * nrows + 0.5), layout="constrained")
        grid = fig.add_gridspec(nrows, ncols)
        for k, name in enumerate(names):
            cell = grid[k // ncols, k % ncols].subgridspec(2, 2, height_ratios=(1, 4), width_ratios=(4, 1),
                                                          hspace=0.0, wspace=0.0)
            ax = fig.add_subplot(cell[1, 0])
            top = fig.add_subplot(cell[0, 0], sharex=ax)
            side = fig.add_subplot(cell[1, 1], sharey=ax)
            s = runs[name].scores["test"]
            sns.scatterplot(x=s, y=mos, s=12, alpha=0.6, color="tab:blue", edgecolor="none", ax=ax)
            params, ok = iqa_metrics.fit_logistic(s, mos)
            if ok:
                xs = np.linspace(s.min(), s.max(), 200)
                ax.plot(xs, iqa_metrics.logistic_4p(xs, *params), color="tab:red", linewidth=1.5)
            sns.histplot(x=s, bins=12, element="step", color="tab:blue", alpha=0.3, ax=top)
            sns.histplot(y=mos, bins=bins, element="step", color="0.5", alpha=0.3, ax=side)
            for marginal in (top, side):
                marginal.set_axis_off()
            ax.locator_params(axis="x", nbins=4)
            ax.set_xlabel("predicted score")
            ax.set_ylabel(f"MOS ({scale})" if k % ncols == 0 else "")
            top.set_title(f"{name}: SRCC {m.loc[name, 'SRCC']:.3f}", fontsize=9)
        fig.suptitle("Test images: prediction vs MOS (red: fitted 4-parameter logistic; margins: distributions)")
    return report._ticks(fig)


def figures(P: dict, runs: dict[str, Run], data: Data, tabs: dict, run_dir: Path) -> dict[str, Figure]:
    """Scatter plots of prediction vs MOS and the training curves; saved under ``figures/``."""
    figs = {"scatter_test": plot_scatter(runs, data.splits["test"].mos, tabs["metrics_test"], P["mos_scale"])}
    done = {n: r.history for n, r in runs.items() if r.ok}
    if done:
        figs["history"] = report.plot_history(done)
    for name, fig in figs.items():
        report.save_figure(fig, run_dir / "figures" / f"{name}.png")
    return figs


# --------------------------------------------------------------------------------------------
# run record
# --------------------------------------------------------------------------------------------

HEADLINE_ABOUT = ("per loss, test SRCC, KRCC (tau-b), PLCC of the raw scores and after the 4-parameter logistic map, "
                  "and RMSE after that map, of each test image's score (the mean prediction over its test_patch_num "
                  "crops) against its MOS; rounded to 4 decimals")


def save(P: dict, run_dir: Path, runs: dict[str, Run], data: Data, tabs: dict[str, pd.DataFrame]) -> list[str]:
    """Write the run record: every loss's per-image val / test scores with MOS and opinion SD
    (``field_sd``), metrics.json with the test metrics as headline, tables/*.csv, the manifest."""
    pw = record.PredictionWriter()
    for name, r in runs.items():
        if not r.ok:
            continue
        for s in ("val", "test"):
            sp = data.splits[s]
            pw.add(name, s, P["seed"], sp.image_names, sp.mos, r.scores[s], None, sd=sp.sd)
        for s, sp in data.cross.items():
            pw.add(name, s, P["seed"], sp.image_names, sp.mos, r.scores[s], None, sd=sp.sd)
    built = loss_modules(P)
    methods = {name: {"config": repr(built[name]), "status": r.status, "best_epoch": r.best_epoch,
                      "family": FAMILY.get(name, ""), "seconds_per_epoch": r.seconds_per_epoch,
                      "train_seconds": r.train_seconds} for name, r in runs.items()}
    extra = {"baseline": P["baseline"], "data_folder": str(data.folder), "embedded": data.embedded,
             "official_split": data.official_split, "mos_scale": P["mos_scale"],
             "test_images": int(len(data.splits["test"].mos)),
             "cross_datasets": {n: {"images": int(len(sp.mos)), "embedded": bool(data.cross_embedded.get(n)),
                                    "folder": str(cross_folder(P, n))} for n, sp in data.cross.items()},
             "scores": "per image, the mean model output over its test_patch_num crops",
             "sample_loss": "NaN: the batch losses have no per-image value"}
    if not any(r.ok for r in runs.values()):
        raise TrainingError("every loss failed to train: " + "; ".join(f"{n}: {r.status}" for n, r in runs.items()))
    return record.save_run(run_dir, EXPERIMENT, P, methods=methods,
                           headline=("metrics_test", tabs["metrics_test"], HEADLINE_ABOUT), tables=tabs,
                           predictions=pw, score_kind="quality score", extra=extra, table_index=False)
