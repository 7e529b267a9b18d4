"""Membership inference across ten training losses: the study's table, plus LiRA and RMIA at low FPR.

The membership-inference study compares how much ten training losses leak (NCE, MAE, GCE,
LogitClip, SCE, focal, PHuber-CE, LogitNorm, flooding and plain cross-entropy, "Normal") with
target accuracy and attack accuracy / precision / recall / F1 / AUC. The kit reproduces that
table and adds what membership-inference research reports now: the true-positive rate at 1%,
0.1% and 0% false-positive rate on log-log ROC curves (Carlini et al. 2022; Zarifzadeh et al. 2024).

Protocol (:func:`lfakit.attacks.make_protocol`): a pool of examples; the target model trains on
a random half (the members), the other half are the non-members; ``n_ref`` reference models per
loss each train on a random half of the pool with the same loss and recipe, so every example is
IN for exactly half of them. Every model's logits and per-example losses on the whole pool go
into the run record (``predictions.npz``: split ``pool``, group ``target`` or ``ref<k>``, field
``in_train``), so any attack can be re-run without retraining.

Several targets per loss (``n_targets``): the target and the first reference models, each attacked
with the other ``n_ref`` models as its references (leave-one-out over models; ``ref_counts`` keeps each
example's IN and OUT fits equally sized, see :func:`lfakit.attacks.reference_use`); the leakage table
(:func:`leakage_comparison`) tests each loss's Δ AUC against the target-to-target spread. Attacks whose
scores all tie are marked degenerate (:func:`tied_targets`). User documentation: ``docs/membership.md``.

The notebook ``notebooks/membership_inference.ipynb`` calls :func:`setup`, :func:`load_pool`,
:func:`pool_summary`, :func:`train_all`, :func:`evaluate`, :func:`tables`, :func:`figures` and
:func:`save`.

Choices the study leaves open:

* Models train for a fixed number of epochs; the kept epoch is the one with the lowest loss on
  a sample of the model's **own training set** (no held-out data enters model selection, as in
  the LiRA and RMIA training code), which in practice is the last or nearly the last.
* The loss attack reads each model's own training loss per example; for ``flooding``, which
  has no per-example value (it floods the batch mean), its base loss (``ce``).
* RMIA's population is each attacked model's non-members (the paper code's; ``rmia_population``).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import multiprocessing as mp
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from lfakit import attacks, losses, models, record, report, runner, runtime, stats
from lfakit.data import cifar
from lfakit.data.datasets import LabelImageDataset
from lfakit.errors import ParameterError
from lfakit.experiments._shared import loss_modules, model_options, open_checked_run, preflight_run, train_or_resume
from lfakit.metrics import privacy
from lfakit.schemas.membership_inference import EXPERIMENT, check_inputs

FPRS = (0.01, 0.001, 0.0)
#: ``tpr_fpr_rule`` -> :func:`lfakit.metrics.privacy.tpr_at_fpr`'s rule (words in the parameter: papermill
#: cannot read a default or help holding "=")
TPR_RULES = {"at_most": "<=", "below": "<"}


# --------------------------------------------------------------------------------------------
# setup and data
# --------------------------------------------------------------------------------------------


def preflight(P: dict, inputs_checked: bool = False) -> None:
    """CIFAR-10 on disk (``dataset=cifar10``), the losses and the device: before a run folder.
    The torch-free :func:`~lfakit.schemas.membership_inference.check_inputs` (data, device) runs
    first, unless ``lfakit run`` has run it (``inputs_checked``)."""
    preflight_run(P, None if inputs_checked else check_inputs, weights=False)
    check_disk(P)


def setup(P: dict) -> Path:
    """Fix threads and seeds, check inputs before any work, and open the run folder."""
    return open_checked_run(P, EXPERIMENT, preflight)


@dataclass
class Pool:
    images: np.ndarray  # uint8 (N, H, W) or (N, H, W, 3)
    labels: np.ndarray  # int64 (N,)
    ids: np.ndarray  # str (N,): "train/<row>" or "test/<row>" of the source
    classes: tuple[str, ...]
    protocol: attacks.Protocol


def load_pool(P: dict) -> Pool:
    """The data set's training and test images as one pool (a seeded sample of ``pool_size``,
    even-sized), and the membership protocol over it."""
    src = cifar.load_source(P["dataset"], P["data_dir"], test_per_class=50)
    images = np.concatenate([src.train_images, src.test_images])
    labels = np.concatenate([src.train_labels, src.test_labels]).astype(np.int64)
    ids = np.array([f"train/{i}" for i in range(len(src.train_labels))] + [f"test/{i}" for i in range(len(src.test_labels))])
    n = min(P["pool_size"] or len(labels), len(labels))
    n -= n % 2
    keep = np.sort(np.random.default_rng(P["seed"]).choice(len(labels), size=n, replace=False))
    protocol = attacks.make_protocol(n, P["n_ref"], P["seed"])
    return Pool(images[keep], labels[keep], ids[keep], tuple(src.classes), protocol)


def pool_summary(pool: Pool) -> pd.DataFrame:
    """Examples per role: target members / non-members, and the reference models' IN sets."""
    pr = pool.protocol
    rows = [{"set": "pool", "examples": len(pool.labels)},
            {"set": "target members", "examples": int(pr.members.sum())},
            {"set": "target non-members", "examples": int((~pr.members).sum())}]
    if pr.ref_in.shape[0]:
        sizes = pr.ref_in.sum(1)
        rows.append({"set": f"each of {pr.ref_in.shape[0]} reference models (mean IN)", "examples": int(round(sizes.mean()))})
        rows.append({"set": "reference models holding each example", "examples": int(pr.ref_in.sum(0).min())})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# queries
# --------------------------------------------------------------------------------------------

#: the query sets (``queries``): (mirror, dy, dx) per query, the identity first. ``mirror``: LiRA's
#: default (``research/mi_lira_2021/inference.py``, ``shift=0, reflect=True``: identity + horizontal
#: mirror); ``mirror_shifts``: LiRA with ``shift=1`` -- both orientations x every shift of -1, 0, 1
#: pixel in each direction of the reflect-padded image, 18 queries, the RMIA paper's
#: ``nb_augmentation: 18``.
QUERY_SETS = {
    "identity": [(False, 0, 0)],
    "mirror": [(False, 0, 0), (True, 0, 0)],
    "mirror_shifts": [(False, 0, 0)] + [(m, dy, dx) for m in (False, True) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                                        if (m, dy, dx) != (False, 0, 0)],
}


def query_images(images: np.ndarray, mirror: bool, dy: int, dx: int) -> np.ndarray:
    """One query's copy of ``images`` (N, H, W[, C]): mirrored left-right, then shifted by ``(dy,
    dx)`` pixels with reflect padding (``np.pad(mode="reflect")``, TensorFlow's ``REFLECT`` that
    LiRA's ``inference.py`` pads with: the window at offset ``shift + d`` of the padded image)."""
    x = images[:, :, ::-1] if mirror else images
    s = max(abs(dy), abs(dx))
    if s == 0:
        return np.ascontiguousarray(x)
    pad = [(0, 0), (s, s), (s, s)] + [(0, 0)] * (x.ndim - 3)
    xp = np.pad(x, pad, mode="reflect")
    h, w = x.shape[1:3]
    return np.ascontiguousarray(xp[:, s + dy:s + dy + h, s + dx:s + dx + w])


def query_split(q: int) -> str:
    """The prediction split of query ``q``: ``pool`` for the identity (as before queries), else ``pool_q<q>``."""
    return "pool" if q == 0 else f"pool_q{q}"


class _QueryDatasets(Mapping):
    """split -> the pool's dataset under that query, built when asked for (one copy at a time)."""

    def __init__(self, pool: "Pool", channels: int, queries: str):
        self.pool, self.channels, self.queries = pool, channels, QUERY_SETS[queries]

    def __len__(self):
        return len(self.queries)

    def __iter__(self):
        return iter(query_split(q) for q in range(len(self.queries)))

    def __getitem__(self, split: str):
        q = 0 if split == "pool" else int(split[len("pool_q"):])
        return ClassImages(query_images(self.pool.images, *self.queries[q]), self.pool.labels, channels=self.channels)


# --------------------------------------------------------------------------------------------
# disk
# --------------------------------------------------------------------------------------------


def _pool_size_estimate(P: dict) -> int:
    full = 60_000 if P["dataset"] == "cifar10" else 1_797
    return min(P["pool_size"] or full, full) // 2 * 2


def disk_need(P: dict) -> dict:
    """Bytes a run needs on disk, estimated before it starts: every model's float64 logits on the
    pool for every query, twice (``predictions/<model>.npz`` and the run record's
    ``predictions.npz``; compression not counted), plus the checkpoints of the models training at
    once (``workers``; ``best.pt`` = the weights, ``last.pt`` = weights + optimiser state, taken as
    twice the weights, so 3 x the weights; none kept for a finished model unless
    ``keep_checkpoints``)."""
    from lfakit.experiments._shared import model_options as _mo

    n = _pool_size_estimate(P)
    q = len(QUERY_SETS[P["queries"]])
    k = 10
    n_models = len(P["losses"]) * (P["n_ref"] + 1)
    in_ch = 3 if P["dataset"] == "cifar10" else models.input_channels(P["model"])
    net = models.build_model(P["model"], k, in_chans=in_ch, precision="float32", **_mo(P))
    weights = sum(p.numel() for p in net.parameters()) * (8 if P["precision"] == "float64" else 4)
    logits = n_models * n * q * k * 8 * 2
    ckpt = 3 * weights * (n_models if P["keep_checkpoints"] else P["workers"])
    return {"models": n_models, "pool": n, "queries": q, "logits_bytes": logits, "checkpoint_bytes": ckpt,
            "total_bytes": logits + ckpt}


def _free_bytes() -> int:
    root = runner.results_root()
    p = Path(root).resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def check_disk(P: dict) -> dict:
    """Stop before a run folder exists when the disk holding the results cannot take
    :func:`disk_need` (a resumed run is not checked: part of it is written already)."""
    need = disk_need(P)
    if P.get("resume"):
        return need
    free = _free_bytes()
    need["free_bytes"] = free
    if need["total_bytes"] > free:
        raise ParameterError(
            f"this run needs about {need['total_bytes'] / 1e9:.1f} GB on disk ({need['models']} models x "
            f"{need['pool']} pool points x {need['queries']} queries of float64 logits, twice: "
            f"{need['logits_bytes'] / 1e9:.1f} GB; checkpoints {need['checkpoint_bytes'] / 1e9:.1f} GB) but "
            f"{runner.results_root()} has {free / 1e9:.1f} GB free; free space, set LFAKIT_RESULTS to a larger disk, "
            "or lower queries / pool_size / n_ref")
    return need


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def model_roles(P: dict, pool: Pool) -> list[tuple[str, int, np.ndarray]]:
    """``(role, seed, training mask)`` of every model of one loss: the target, then the references."""
    roles = [("target", P["seed"], pool.protocol.members)]
    roles += [(f"ref{k}", P["seed"] + 1 + k, pool.protocol.ref_in[k]) for k in range(pool.protocol.ref_in.shape[0])]
    return roles


def _tag(loss: str, role: str) -> str:
    return f"{loss}__{role}"


def _channels(P: dict, pool: Pool) -> int:
    return 3 if pool.images.ndim == 4 else models.input_channels(P["model"])


def build_model(P: dict, pool: Pool):
    return models.build_model(P["model"], len(pool.classes), in_chans=_channels(P, pool), precision=P["precision"],
                              **model_options(P))


def sample_loss_fn(name: str, fn: torch.nn.Module) -> torch.nn.Module:
    """The per-example loss the loss attack reads: the training loss itself, or for flooding its base."""
    from lfakit.engine import per_sample_loss

    return per_sample_loss(fn.base if name == "flooding" else fn)


#: items ``(x, class index (int64), index)``, read a batch at a time (the multi-class losses take int64 labels)
ClassImages = LabelImageDataset


def train_model(P: dict, pool: Pool, name: str, role: str, seed: int, mask: np.ndarray, run_dir: Path) -> None:
    """Train one model (the target or one reference model of loss ``name``) on ``pool[mask]``
    and save its float64 logits on the whole pool for every query (``predictions/<loss>__<role>.npz``,
    ``logits_pool`` for the identity, ``logits_pool_q<q>`` for the others), computed outside autocast
    (the model's own precision, float32 or better); nothing to do when that file exists
    (``--resume``, or another process finished it). While it trains, its folder
    ``checkpoints/<loss>__<role>/`` holds at most ``best.pt`` and ``last.pt`` (no ``last.prev.pt``),
    and it is deleted once the logits are saved unless ``keep_checkpoints``."""
    tag = _tag(name, role)
    if (Path(run_dir) / "predictions" / f"{tag}.npz").exists():
        return
    ch = _channels(P, pool)
    idx = np.flatnonzero(mask)
    train = ClassImages(pool.images[idx], pool.labels[idx], channels=ch, augment=P["augment"])
    own = ClassImages(pool.images[idx[:512]], pool.labels[idx[:512]], channels=ch)  # model selection: own training data
    fn = losses.build(name, **P["loss_kwargs"].get(name, {}))
    # no per-epoch bar for each of the many models: train_all shows one bar over the models
    train_or_resume({**P, "seed": seed, "resume": True, "progress": False}, tag, fn, lambda: build_model(P, pool), train, own,
                    _QueryDatasets(pool, ch, P["queries"]), run_dir, {}, f"{name} {role}", sample_losses=False,
                    predict_amp=False, keep_previous_checkpoint=False, prune_checkpoints=not P["keep_checkpoints"])


def _job(P: dict, name: str, role: str, seed: int, mask: np.ndarray, run_dir: str) -> str:
    """One model in a worker process: its own threads and data."""
    runtime.set_threads(P["num_threads"])
    train_model(P, load_pool(P), name, role, seed, mask, Path(run_dir))
    return _tag(name, role)


@dataclass
class Models:
    """One loss's M = n_ref + 1 models (the target first, then the references): logits (M, N, Q, K)
    on the pool for every query, per-example losses (M, N) of the identity query, and each model's
    training set ``in_train`` (M, N)."""

    loss: str
    logits: np.ndarray
    sample_loss: np.ndarray
    in_train: np.ndarray
    roles: list[str]


def _read(P: dict, pool: Pool, name: str, role: str, run_dir: Path, fn) -> tuple[np.ndarray, np.ndarray]:
    zz = record.read_npz(Path(run_dir) / "predictions" / f"{_tag(name, role)}.npz")
    z = np.stack([zz[f"logits_{query_split(q)}"] for q in range(len(QUERY_SETS[P["queries"]]))], 1)
    with torch.no_grad():
        loss = sample_loss_fn(name, fn)(torch.from_numpy(z[:, 0]), torch.from_numpy(pool.labels)).numpy()
    return z, loss.astype(np.float64)


def train_all(P: dict, pool: Pool, run_dir: Path) -> dict[str, Models]:
    """Every loss's target and reference models, in ``workers`` processes (1: here, in order).
    Models already saved in the run folder are not trained again."""
    jobs = [(name, role, seed, mask) for name in P["losses"] for role, seed, mask in model_roles(P, pool)]
    todo = [j for j in jobs if not (Path(run_dir) / "predictions" / f"{_tag(j[0], j[1])}.npz").exists()]
    if P["workers"] > 1 and todo:
        ctx = mp.get_context("spawn")  # a fresh interpreter per worker: no forked torch state
        with ProcessPoolExecutor(max_workers=P["workers"], mp_context=ctx) as ex:
            futs = [ex.submit(_job, P, *j, str(run_dir)) for j in todo]
            for f in runtime.progress(as_completed(futs), P.get("progress", True), total=len(futs), desc="models"):
                f.result()
    else:
        runtime.set_threads(P["num_threads"])  # as each worker process does: the same models either way
        for name, role, seed, mask in runtime.progress(todo, P.get("progress", True), desc="models"):
            train_model(P, pool, name, role, seed, mask, run_dir)
    fns = loss_modules(P)
    out = {}
    roles = model_roles(P, pool)
    for name in P["losses"]:
        read = [_read(P, pool, name, role, run_dir, fns[name]) for role, _, _ in roles]
        out[name] = Models(name, np.stack([r[0] for r in read]), np.stack([r[1] for r in read]),
                           np.stack([m for _, _, m in roles]).astype(bool), [r for r, _, _ in roles])
    return out


# --------------------------------------------------------------------------------------------
# attacks and metrics
# --------------------------------------------------------------------------------------------


def attack_options(P: dict) -> attacks.AttackOptions:
    """The attacks' conventions from the parameters (:class:`lfakit.attacks.AttackOptions`)."""
    a = ("tune" if P["rmia_tune_a"] else P["rmia_a"]) if P["rmia_offline"] else None
    return attacks.AttackOptions(
        fixed_variance=P["fixed_variance"], lira_center=P["lira_center"], lira_offline_test=P["lira_offline_test"],
        lira_fixed_sd=P["lira_fixed_sd"], ref_counts=P["ref_counts"], rmia_gamma=P["rmia_gamma"], rmia_offline_a=a, rmia_trim=P["rmia_trim"],
        rmia_signal=P["rmia_signal"], rmia_temperature=P["rmia_temperature"], rmia_margin=P["rmia_margin"],
        rmia_taylor_order=P["rmia_taylor_order"], rmia_population=P["rmia_population"],
        rmia_self_vote=P["rmia_self_vote"], seed=P["seed"])


def loss_is_monotone_in_confidence(t: Models, labels: np.ndarray) -> bool:
    """Whether the loss attack ranks as a one-query confidence attack: the per-example loss is a
    non-increasing function of the identity query's true-class probability over every example of
    every model of this loss (checked on the data: sort by p_y, the losses never rise; ties in p_y
    must share one loss)."""
    p = np.exp(attacks._log_py(t.logits[:, :, :1], labels))[..., 0].ravel()
    l = t.sample_loss.ravel()
    order = np.lexsort((l, p))
    ps, ls = p[order], l[order]
    step = np.diff(ls)
    tol = 1e-9 * max(1.0, float(np.abs(ls).max()))
    return bool(np.all((step <= tol) | (np.diff(ps) == 0) & (np.abs(step) <= tol)))


@dataclass
class Evaluation:
    targets: list[int]  # indices of the models attacked as targets (0: the target, k: ref{k-1})
    accuracy: dict[str, dict[int, dict[str, float]]]  # loss -> target -> {"train", "test"} accuracy
    results: dict[str, dict[int, dict]]  # loss -> target -> attack -> AttackResult
    metrics: dict[str, dict[int, dict[str, dict]]]  # loss -> target -> attack -> attack_metrics
    in_train: np.ndarray  # (M, N) every model's training set (shared by the losses)
    loss_as_confidence: dict[str, bool]  # loss -> its loss attack ranks as the one-query confidence attack

    @property
    def is_member(self) -> np.ndarray:
        """The first target's membership."""
        return self.in_train[self.targets[0]]


def evaluate(P: dict, pool: Pool, trained: dict[str, Models]) -> Evaluation:
    """Every attack on ``n_targets`` targets of every loss: models 0 .. n_targets - 1 (the target,
    then the first reference models), each attacked with the other n_ref models as its references
    (:func:`lfakit.attacks.attack_targets`); thresholds from those references only."""
    targets = list(range(P["n_targets"]))
    o = attack_options(P)
    acc, res, met, mono = {}, {}, {}, {}
    in_train = None
    for name, t in trained.items():
        in_train = t.in_train
        pred = t.logits[:, :, 0].argmax(-1)
        hit = pred == pool.labels[None]
        acc[name] = {k: {"train": float(hit[k][t.in_train[k]].mean()), "test": float(hit[k][~t.in_train[k]].mean())}
                     for k in targets}
        res[name] = attacks.attack_targets(t.logits, t.sample_loss, pool.labels, t.in_train, targets,
                                           attacks=tuple(P["attacks"]), options=o, seed=P["seed"])
        met[name] = {k: {a: privacy.attack_metrics(t.in_train[k], r.scores, r.threshold, TPR_RULES[P["tpr_fpr_rule"]])
                         for a, r in res[name][k].items()} for k in targets}
        mono[name] = loss_is_monotone_in_confidence(t, pool.labels)
    return Evaluation(targets, acc, res, met, in_train, mono)


def _mean_sd(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(np.nanmean(v)), float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else float("nan")


def tied_targets(ev: Evaluation, name: str, attack: str) -> int:
    """How many of the targets got one score for every pool example: a degenerate attack (its AUC
    is 0.5 and its TPR at low FPR 0 by construction, not a measured leakage). RMIA with ``gamma = 2``
    on models whose logits are bounded (logit_clip, logit_norm) is one: ``p(x | target) / Pr(x)``
    then stays within a factor 2 between points, so no pair ``(x, z)`` ever votes yes."""
    return sum(int(np.unique(ev.results[name][k][attack].scores).size == 1) for k in ev.targets)


def degenerate_note(ev: Evaluation, name: str, attack: str) -> str:
    n = tied_targets(ev, name, attack)
    return "" if n == 0 else f"degenerate: all scores tie ({n}/{len(ev.targets)} targets)"


def _over_targets(ev: Evaluation, name: str, attack: str, key: str) -> tuple[float, float]:
    return _mean_sd([ev.metrics[name][k][attack][key] for k in ev.targets])


def study_table(P: dict, ev: Evaluation) -> pd.DataFrame:
    """The study's layout (target train / test accuracy in %, the study attack's accuracy in %,
    precision, recall, F1, AUC) extended with the AUC's standard deviation over the targets and
    the TPR at 1% and 0.1% FPR of the study and reference attacks: every value the mean over the
    ``n_targets`` targets."""
    sa, ra = P["study_attack"], P["reference_attack"]
    rows = []
    for name in ev.metrics:
        def m(a, key):
            return _over_targets(ev, name, a, key)[0]
        rows.append({"Loss": name,
                     "Target Train Acc (%)": 100 * np.mean([ev.accuracy[name][k]["train"] for k in ev.targets]),
                     "Target Test Acc (%)": 100 * np.mean([ev.accuracy[name][k]["test"] for k in ev.targets]),
                     "Attack Acc (%)": 100 * m(sa, "accuracy"), "Attack Precision": m(sa, "precision"),
                     "Attack Recall": m(sa, "recall"), "Attack F1": m(sa, "f1"), "Attack AUC": m(sa, "auc"),
                     "AUC sd (targets)": _over_targets(ev, name, sa, "auc")[1],
                     f"TPR@1%FPR ({sa})": m(sa, "tpr@1%fpr"), f"TPR@1%FPR ({ra})": m(ra, "tpr@1%fpr"),
                     f"TPR@0.1%FPR ({ra})": m(ra, "tpr@0.1%fpr"), "Targets": len(ev.targets)})
    return report.round_floats(pd.DataFrame(rows), 3)


def attack_table(ev: Evaluation) -> pd.DataFrame:
    """Every loss x attack, mean and standard deviation over the targets: AUC, balanced accuracy,
    precision, recall, F1 at the threshold chosen on each target's references, membership
    advantage, TPR at 1%, 0.1% and 0% FPR; ``Note`` marks a degenerate attack whose scores all tie
    on some target (:func:`tied_targets`: its AUC 0.5 is no measurement). The loss attack's row is left out for a loss whose
    per-example loss is a monotone function of the true-class probability (it ranks the pool as
    the one-query confidence attack; :func:`loss_is_monotone_in_confidence`)."""
    rows = []
    for name, d in ev.metrics.items():
        for a in d[ev.targets[0]]:
            if a == "loss" and ev.loss_as_confidence[name]:
                continue
            mean = {k: _over_targets(ev, name, a, k) for k in ("auc", "balanced_accuracy", "precision", "recall", "f1",
                                                               "advantage", "tpr@1%fpr", "tpr@0.1%fpr", "tpr@0%fpr")}
            rows.append({"Loss": name, "Attack": a, "AUC": mean["auc"][0], "AUC sd": mean["auc"][1],
                         "Bal. acc": mean["balanced_accuracy"][0], "Precision": mean["precision"][0],
                         "Recall": mean["recall"][0], "F1": mean["f1"][0], "Advantage": mean["advantage"][0],
                         "TPR@1%": mean["tpr@1%fpr"][0], "TPR@1% sd": mean["tpr@1%fpr"][1],
                         "TPR@0.1%": mean["tpr@0.1%fpr"][0], "TPR@0%": mean["tpr@0%fpr"][0],
                         "Targets": len(ev.targets), "Note": degenerate_note(ev, name, a)})
    return report.round_floats(pd.DataFrame(rows), 3)


def loss_attack_note(P: dict, ev: Evaluation) -> str:
    """Which losses' loss-attack rows the attacks table leaves out, and why."""
    if "loss" not in P["attacks"]:
        return ""
    same = [n for n, v in ev.loss_as_confidence.items() if v]
    differ = [n for n, v in ev.loss_as_confidence.items() if not v]
    if not same:
        return "Loss attack: shown for every loss (no loss here is a monotone function of the true-class probability)."
    q = len(QUERY_SETS[P["queries"]])
    conf = "the confidence attack" if q == 1 else "a confidence attack on the identity query"
    return (f"Loss attack: left out for {', '.join(same)}: their per-example loss is a monotone function of the "
            f"true-class probability (checked on every model's pool outputs), so it ranks the pool exactly as {conf}"
            + (f"; shown for {', '.join(differ)}." if differ else "."))


#: the Test of every leakage row: the per-target differences, the target-to-target spread included
TARGET_TEST = "target-level t (target spread + pool resampling)"


def leakage_comparison(P: dict, ev: Evaluation) -> pd.DataFrame:
    """Each loss against the baseline by the reference attack's AUC over the ``n_targets`` targets.
    Target ``k`` of every loss is trained on the same examples from the same seed, so the losses
    are paired by target; ``Δ AUC`` is the mean over targets of the per-target difference, tested by
    :func:`lfakit.stats.seed_level_test` (paired) with the pool-resampling covariance of all the
    targets' AUCs (:func:`lfakit.metrics.privacy.shared_bootstrap_auc`: one resample of the pool
    for every model, ``n_boot``, ``seed``): the variance of the mean difference is the
    target-to-target spread of the differences plus the pool-sampling noise, referred to a t with
    at most ``n_targets - 1`` degrees of freedom; its 95% interval; the Holm-adjusted p over the
    losses (one family). ``Verdict``: "more leakage" / "less leakage" where Holm p < ``alpha``,
    else "no evidence"; with one target there is no spread to test against and no p.
    (Caveat: the targets of one loss share their reference models, the leave-one-out over
    models, so their AUCs are not fully independent.)"""
    ra, base = P["reference_attack"], P["baseline"]
    T = ev.targets
    y = np.stack([ev.in_train[k] for k in T])
    reps = {name: privacy.shared_bootstrap_auc(y, np.stack([ev.results[name][k][ra].scores for k in T]), P["n_boot"],
                                               P["seed"]) for name in ev.results}
    rows = []
    for name in ev.results:
        if name == base:
            continue
        v1 = np.array([ev.metrics[base][k][ra]["auc"] for k in T])
        v2 = np.array([ev.metrics[name][k][ra]["auc"] for k in T])
        t = stats.seed_level_test(v1, v2, stats.replicate_covariance(reps[base], reps[name]))
        rows.append([name, v1.mean(), v2.mean(), t["delta"], t["ci_low"], t["ci_high"], t["p_value"], t["df"]])
    out = pd.DataFrame(rows, columns=["Loss", f"AUC {base}", "AUC", "Δ AUC", "CI low", "CI high", "p", "df"])
    p = out["p"].to_numpy(float)
    ok = np.isfinite(p)
    holm = np.full(len(p), np.nan)
    if ok.any():
        holm[ok] = stats.holm(p[ok])
    out["p (Holm)"] = holm
    out["Verdict"] = ["more leakage" if h < P["alpha"] and d > 0 else "less leakage" if h < P["alpha"] and d < 0
                      else "no evidence" if np.isfinite(h) else "untested (1 target)"
                      for h, d in zip(holm, out["Δ AUC"])]
    tied = [name for name in ev.results if name != base and (tied_targets(ev, name, ra) or tied_targets(ev, base, ra))]
    out.loc[out["Loss"].isin(tied), "Verdict"] = f"untested ({ra} degenerate: all scores tie)"
    out["Test"] = TARGET_TEST
    out["Targets"] = len(T)
    out.attrs["baseline"] = base
    return report.round_floats(out, 4)


def comparison_note(P: dict, pool: Pool) -> str:
    n = len(pool.labels)
    T = P["n_targets"]
    note = (f"Evidence: {T} target model(s) per loss -- models 0..{T - 1} of each loss's {P['n_ref'] + 1} (the target and "
            f"the first reference models), each attacked with the other {P['n_ref']} as its references (leave-one-out "
            f"over models, as LiRA's and RMIA's code average over targets); {n // 2} members and {n // 2} non-members "
            f"for the target, about as many for the others; {len(QUERY_SETS[P['queries']])} quer(ies) per example "
            f"({P['queries']}); thresholds chosen on each target's references' own members and non-members (never on "
            f"the target's). Tables: means over the targets, sd = their standard deviation. Δ AUC: the "
            f"{P['reference_attack']} AUC of each loss minus the {P['baseline']} one, target by target (target k of "
            f"every loss trains on the same examples from the same seed), averaged; Test: {TARGET_TEST} -- "
            f"lfakit.stats.seed_level_test, paired by target: the variance of the mean difference is the "
            f"target-to-target spread of the differences plus the pool-resampling noise ({P['n_boot']} resamples of "
            f"the pool shared by all targets), t with at most {T - 1} df; p (Holm): Holm over the "
            f"{len(P['losses']) - 1} losses; a verdict (more / less leakage) where p (Holm) < {P['alpha']}. The "
            f"targets of one loss share reference models, so their AUCs are not fully independent. TPR at FPR uses "
            f"'{TPR_RULES[P['tpr_fpr_rule']]}' (LiRA's plot.py: '<'). TPR at 0.1% FPR needs at least 1,000 non-members to be "
            f"more than 0 or 1 step; here there are {n // 2}.")
    if P["dataset"] == "digits":
        note += " Data: scikit-learn's digits and a small MLP: these numbers test the pipeline, not CIFAR-10."
    return note


def tables(P: dict, ev: Evaluation) -> dict[str, pd.DataFrame]:
    return {"study": study_table(P, ev), "attacks": attack_table(ev), "leakage_vs_baseline": leakage_comparison(P, ev)}


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------


def plot_roc_loglog(ev: Evaluation, attacks_: list[str]) -> Figure:
    """Log-log ROC curves of the first target, one panel per attack, one line per loss, the chance
    diagonal dashed; each panel's title names the loss whose mean attack AUC over the targets is
    highest, one legend below the panels."""
    names = list(ev.results)
    t0 = ev.targets[0]
    colors = report.colors_for(names)
    ncols = min(3, len(attacks_))
    nrows = math.ceil(len(attacks_) / ncols)
    n_out = int((~ev.is_member).sum())
    with report.style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(min(report.FIG_WIDTH, 3.3 * ncols + 0.3), 3.0 * nrows + 0.8),
                                 squeeze=False, sharex=True, sharey=True, layout="constrained")
        for ax, a in zip(axes.flat, attacks_):
            for name in names:
                fpr, tpr = privacy.roc_curve_points(ev.is_member, ev.results[name][t0][a].scores)
                ax.plot(fpr, tpr, color=colors[name], linewidth=1.2, label=name)
            lo = 1.0 / max(n_out, 1)
            ax.plot([lo, 1], [lo, 1], "k--", linewidth=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(lo, 1)
            ax.set_ylim(lo, 1)
            best = max(names, key=lambda n: _over_targets(ev, n, a, "auc")[0])
            ax.set_title(f"{a} (highest mean AUC: {best} {_over_targets(ev, best, a, 'auc')[0]:.2f})", fontsize=9)
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
        for ax in axes.flat[len(attacks_):]:
            fig.delaxes(ax)
        handles = [plt.Line2D([], [], color=colors[n], linewidth=1.5) for n in names]
        fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 5),
                   title="loss (curves: target model 0; AUCs: attacks table)")
    return report._ticks(fig)


def plot_privacy_utility(P: dict, ev: Evaluation) -> Figure:
    """Target test accuracy against the reference attack's TPR at 0.1% FPR and against its AUC,
    each the mean over the targets."""
    ra = P["reference_attack"]
    colors = report.colors_for(list(ev.metrics))
    with report.style():
        fig, axes = plt.subplots(1, 2, figsize=(report.FIG_WIDTH, 4.2), layout="constrained")
        for ax, key, label in ((axes[0], "tpr@0.1%fpr", "TPR at 0.1% FPR"), (axes[1], "auc", "attack AUC")):
            for name in ev.metrics:
                x = _over_targets(ev, name, ra, key)[0]
                y = 100 * np.mean([ev.accuracy[name][k]["test"] for k in ev.targets])
                ax.scatter([x], [y], color=colors[name], s=36)
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=report.MIN_FONT)
            ax.set_xlabel(f"{label} ({ra}, mean over targets)")
            ax.set_ylabel("target test accuracy (%)")
        axes[0].set_title("utility vs leakage of the most exposed examples")
        axes[1].set_title("utility vs average-case leakage")
    return report._ticks(fig)


def figures(P: dict, ev: Evaluation, run_dir: Path) -> dict[str, Figure]:
    figs = {"roc_loglog": plot_roc_loglog(ev, list(P["attacks"])), "privacy_utility": plot_privacy_utility(P, ev)}
    for name, fig in figs.items():
        report.save_figure(fig, run_dir / "figures" / f"{name}.png")
    return figs


# --------------------------------------------------------------------------------------------
# run record
# --------------------------------------------------------------------------------------------

HEADLINE_ABOUT = ("the study's table: per loss, the mean over the targets of the target model's accuracy on its "
                  "members (train) and non-members (test), and of the study attack's accuracy, precision, recall and "
                  "F1 at the threshold chosen on the references, its AUC (with its sd over the targets), and the TPR "
                  "at 1% / 0.1% FPR of the study and reference attacks; rounded to 3 decimals")


def save(P: dict, run_dir: Path, pool: Pool, trained: dict[str, Models], ev: Evaluation,
         tabs: dict[str, pd.DataFrame]) -> list[str]:
    """The run record: every model's logits on the pool for every query (split ``pool`` for the
    identity, ``pool_q<q>`` for the others) and its per-example loss (with ``in_train``), so the
    attacks re-run without retraining; metrics.json (the study table as headline, every target's
    attack metrics and thresholds), tables."""
    pw = record.PredictionWriter()
    roles = model_roles(P, pool)
    for name, t in trained.items():
        for k, (role, seed, mask) in enumerate(roles):
            for q in range(t.logits.shape[2]):
                pw.add(name, query_split(q), seed, pool.ids, pool.labels, t.logits[k, :, q], t.sample_loss[k],
                       group=role, in_train=mask.astype(np.int8))
    built = loss_modules(P)
    methods = {}
    for name in trained:
        per = {roles[k][0]: {"accuracy": ev.accuracy[name][k],
                             "attacks": {a: {**m, "threshold": float(ev.results[name][k][a].threshold)}
                                         for a, m in ev.metrics[name][k].items()}}
               for k in ev.targets}
        means = {a: {key: _over_targets(ev, name, a, key)[0] for key in ev.metrics[name][ev.targets[0]][a]}
                 for a in ev.metrics[name][ev.targets[0]]}
        methods[name] = {"config": repr(built[name]), "accuracy": ev.accuracy[name][ev.targets[0]],
                         "attacks_mean_over_targets": means, "targets": per,
                         "loss_attack_as_confidence": ev.loss_as_confidence[name]}
    extra = {"baseline": P["baseline"], "dataset": P["dataset"], "classes": list(pool.classes),
             "pool": len(pool.labels), "n_ref": P["n_ref"], "n_targets": P["n_targets"],
             "targets": [roles[k][0] for k in ev.targets], "queries": P["queries"],
             "query_transforms": [list(map(int, q)) for q in QUERY_SETS[P["queries"]]],
             "study_attack": P["study_attack"], "reference_attack": P["reference_attack"],
             "attack_options": {k: v for k, v in vars(attack_options(P)).items() if k != "population"},
             "scores": "logits of every model on every pool example, split pool (identity query) and pool_q<q> (query q "
                       "of query_transforms: mirror, dy, dx); field_in_train marks the model's training set",
             "sample_loss": "each model's own training loss per example on the identity query (flooding: its base loss)"}
    return record.save_run(run_dir, EXPERIMENT, P, methods=methods,
                           headline=("study", tabs["study"], HEADLINE_ABOUT), tables=tabs, predictions=pw,
                           score_kind="logit", extra=extra, table_index=False)
