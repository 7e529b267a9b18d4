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

One target model per loss: the leakage table (:func:`leakage_comparison`) gives the Δ AUC of these
target models over the sampling of the pool, and no "less / more leakage" verdict about the losses,
which needs several target models per loss (``lfakit sweep membership_inference --seeds 0,1,2`` and
``lfakit compare`` on the sweep folder).

The notebook ``notebooks/membership_inference.ipynb`` calls :func:`setup`, :func:`load_pool`,
:func:`pool_summary`, :func:`train_all`, :func:`evaluate`, :func:`tables`, :func:`figures` and
:func:`save`.

Choices the study leaves open:

* Models train for a fixed number of epochs; the kept epoch is the one with the lowest loss on
  a sample of the model's **own training set** (no held-out data enters model selection, as in
  the LiRA and RMIA training code), which in practice is the last or nearly the last.
* The loss attack reads each model's own training loss per example; for ``flooding``, which
  has no per-example value (it floods the batch mean), its base loss (``ce``).
* RMIA compares each example with every other pool example (no membership label is used).
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import multiprocessing as mp
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from lfakit import attacks, losses, models, record, report, runtime, stats
from lfakit.data import cifar
from lfakit.data.datasets import ArrayImageDataset
from lfakit.experiments._shared import model_options, open_checked_run, loss_modules, preflight_device, preflight_losses, train_or_resume
from lfakit.metrics import privacy
from lfakit.schemas.membership_inference import EXPERIMENT, check_inputs

FPRS = (0.01, 0.001, 0.0)


# --------------------------------------------------------------------------------------------
# setup and data
# --------------------------------------------------------------------------------------------


def preflight(P: dict, inputs_checked: bool = False) -> None:
    """CIFAR-10 on disk (``dataset=cifar10``), the losses and the device: before a run folder.
    The torch-free :func:`~lfakit.schemas.membership_inference.check_inputs` (data, device) runs
    first, unless ``lfakit run`` has run it (``inputs_checked``)."""
    if not inputs_checked:
        check_inputs(P)
    preflight_losses(P)
    preflight_device(P)


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


class ClassImages(ArrayImageDataset):
    """Items ``(x, class index (int64), index)``: what the multi-class losses take (the base
    dataset returns float targets)."""

    def __init__(self, images, labels, **kw):
        super().__init__(images, np.zeros(len(labels), np.float32), **kw)
        self.labels = np.asarray(labels, dtype=np.int64)

    def get(self, index, generator=None):
        x, _, i = super().get(index, generator)
        return x, torch.tensor(self.labels[i]), i


def train_model(P: dict, pool: Pool, name: str, role: str, seed: int, mask: np.ndarray, run_dir: Path) -> None:
    """Train one model (the target or one reference model of loss ``name``) on ``pool[mask]``
    and save its float64 logits on the whole pool (``predictions/<loss>__<role>.npz``); nothing
    to do when that file exists (``--resume``, or another process finished it)."""
    tag = _tag(name, role)
    if (Path(run_dir) / "predictions" / f"{tag}.npz").exists():
        return
    ch = _channels(P, pool)
    idx = np.flatnonzero(mask)
    train = ClassImages(pool.images[idx], pool.labels[idx], channels=ch, augment=P["augment"])
    own = ClassImages(pool.images[idx[:512]], pool.labels[idx[:512]], channels=ch)  # model selection: own training data
    everything = ClassImages(pool.images, pool.labels, channels=ch)
    fn = losses.build(name, **P["loss_kwargs"].get(name, {}))
    # no per-epoch bar for each of the many models: train_all shows one bar over the models
    train_or_resume({**P, "seed": seed, "resume": True, "progress": False}, tag, fn, lambda: build_model(P, pool), train, own,
                    {"pool": everything}, run_dir, {}, f"{name} {role}", sample_losses=False)


def _job(P: dict, name: str, role: str, seed: int, mask: np.ndarray, run_dir: str) -> str:
    """One model in a worker process: its own threads and data."""
    runtime.set_threads(P["num_threads"])
    train_model(P, load_pool(P), name, role, seed, mask, Path(run_dir))
    return _tag(name, role)


@dataclass
class Models:
    """One loss's models: logits (N, K) and per-example losses (N,) on the pool."""

    loss: str
    target_logits: np.ndarray
    target_loss: np.ndarray
    ref_logits: np.ndarray  # (R, N, K)
    ref_loss: np.ndarray  # (R, N)


def _read(P: dict, pool: Pool, name: str, role: str, run_dir: Path, fn) -> tuple[np.ndarray, np.ndarray]:
    z = record.read_npz(Path(run_dir) / "predictions" / f"{_tag(name, role)}.npz")["logits_pool"]
    with torch.no_grad():
        loss = sample_loss_fn(name, fn)(torch.from_numpy(z), torch.from_numpy(pool.labels)).numpy()
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
    for name in P["losses"]:
        tz, tl = _read(P, pool, name, "target", run_dir, fns[name])
        refs = [_read(P, pool, name, role, run_dir, fns[name]) for role, _, _ in model_roles(P, pool)[1:]]
        k = len(pool.classes)
        rz = np.stack([r[0] for r in refs]) if refs else np.zeros((0, len(pool.labels), k))
        rl = np.stack([r[1] for r in refs]) if refs else np.zeros((0, len(pool.labels)))
        out[name] = Models(name, tz, tl, rz, rl)
    return out


# --------------------------------------------------------------------------------------------
# attacks and metrics
# --------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    accuracy: dict[str, dict[str, float]]  # loss -> {"train", "test"} target accuracy
    results: dict[str, dict]  # loss -> attack -> AttackResult
    metrics: dict[str, dict[str, dict]]  # loss -> attack -> attack_metrics (+ CIs)
    is_member: np.ndarray


def evaluate(P: dict, pool: Pool, trained: dict[str, Models]) -> Evaluation:
    """Every attack on every loss's target model; thresholds from the reference models only;
    bootstrap intervals for AUC and TPR@1%FPR (members and non-members resampled separately)."""
    m = pool.protocol.members
    acc, res, met = {}, {}, {}
    for name, t in trained.items():
        pred = t.target_logits.argmax(1)
        acc[name] = {"train": float((pred[m] == pool.labels[m]).mean()), "test": float((pred[~m] == pool.labels[~m]).mean())}
        res[name] = attacks.run_attacks(t.target_logits, t.target_loss, pool.labels, t.ref_logits, t.ref_loss,
                                        pool.protocol, attacks=tuple(P["attacks"]), fixed_variance=P["fixed_variance"],
                                        rmia_gamma=P["rmia_gamma"],
                                        rmia_offline_a=P["rmia_a"] if P["rmia_offline"] else None, seed=P["seed"])
        met[name] = {}
        for a, r in res[name].items():
            d = privacy.attack_metrics(m, r.scores, r.threshold)
            d["auc_ci"] = privacy.bootstrap_ci(m, r.scores, "auc", P["n_boot"], P["seed"])
            d["tpr1_ci"] = privacy.bootstrap_ci(m, r.scores, "tpr@1%fpr", P["n_boot"], P["seed"])
            met[name][a] = d
    return Evaluation(acc, res, met, m)


def _ci(lo_hi) -> str:
    lo, hi = lo_hi
    return f"[{lo:.3f}, {hi:.3f}]"


def study_table(P: dict, ev: Evaluation) -> pd.DataFrame:
    """The study's layout (target train / test accuracy in %, the study attack's accuracy in %,
    precision, recall, F1, AUC), extended with its AUC interval and the TPR at 1% and 0.1% FPR
    of the study attack and of the reference attack."""
    sa, ra = P["study_attack"], P["reference_attack"]
    rows = []
    for name, d in ev.metrics.items():
        s, r = d[sa], d[ra]
        rows.append({"Loss": name, "Target Train Acc (%)": 100 * ev.accuracy[name]["train"],
                     "Target Test Acc (%)": 100 * ev.accuracy[name]["test"], "Attack Acc (%)": 100 * s["accuracy"],
                     "Attack Precision": s["precision"], "Attack Recall": s["recall"], "Attack F1": s["f1"],
                     "Attack AUC": s["auc"], "AUC 95% CI": _ci(s["auc_ci"]),
                     f"TPR@1%FPR ({sa})": s["tpr@1%fpr"], f"TPR@1%FPR ({ra})": r["tpr@1%fpr"],
                     f"TPR@0.1%FPR ({ra})": r["tpr@0.1%fpr"]})
    out = pd.DataFrame(rows)
    return report.round_floats(out, 3)


def attack_table(ev: Evaluation) -> pd.DataFrame:
    """Every loss x attack: AUC [CI], balanced accuracy, precision, recall, F1 at the threshold
    chosen on the reference models, membership advantage, TPR at 1% [CI], 0.1% and 0% FPR."""
    rows = []
    for name, d in ev.metrics.items():
        for a, m in d.items():
            rows.append({"Loss": name, "Attack": a, "AUC": m["auc"], "AUC CI": _ci(m["auc_ci"]),
                         "Bal. acc": m["balanced_accuracy"], "Precision": m["precision"], "Recall": m["recall"],
                         "F1": m["f1"], "Advantage": m["advantage"], "TPR@1%": m["tpr@1%fpr"],
                         "TPR@1% CI": _ci(m["tpr1_ci"]), "TPR@0.1%": m["tpr@0.1%fpr"], "TPR@0%": m["tpr@0%fpr"]})
    return report.round_floats(pd.DataFrame(rows), 3)


#: the Test of every leakage row: one target model per loss, so the test covers test-set sampling only
TEST_SET_ONLY = "paired bootstrap, test set only"


def verdict_how(P: dict) -> str:
    """How to get a verdict about the losses' leakage: several target models per loss, compared by
    ``lfakit compare``'s test over seeds."""
    return (f"a verdict needs several target models per loss: lfakit sweep {EXPERIMENT} --seeds 0,1,2, then lfakit "
            f"compare results/{EXPERIMENT}/sweeps/<sweep-id> --metric attack_auc --baseline {P['baseline']}")


def leakage_comparison(P: dict, ev: Evaluation) -> pd.DataFrame:
    """Each loss's target model against the baseline's, by the reference attack's AUC:
    ``Δ AUC (these models)`` with the percentile 95% interval and two-sided p of a paired bootstrap
    of the pool examples (members and non-members resampled separately; ``n_boot``, ``seed``;
    interval and p from the same resamples, the interval not adjusted for multiplicity), and the
    Holm-adjusted p over the losses (one family, for display).

    Here the test set is the pool: the target's members and non-members. With one target model
    per loss these tests cover the sampling of those examples only, not the retraining noise
    (another target of the same loss, trained on another half, leaks differently): they compare
    these two models, so the table gives no "less / more leakage" verdict; ``Test`` says ``test
    set only`` and ``Seeds`` is 1 (:func:`verdict_how`)."""
    ra, base = P["reference_attack"], P["baseline"]
    y = ev.is_member.astype(int)
    rows = []
    for name in ev.results:
        if name == base:
            continue
        b = stats.paired_bootstrap(y, ev.results[base][ra].scores, ev.results[name][ra].scores, metric="auroc",
                                   n_boot=P["n_boot"], seed=P["seed"], stratified=True)
        rows.append([name, b["metric1"], b["metric2"], b["delta"], b["ci_low"], b["ci_high"], b["p_value"]])
    out = pd.DataFrame(rows, columns=["Loss", f"AUC {base}", "AUC", "Δ AUC (these models)", "CI low (test set)",
                                      "CI high (test set)", "p (test set)"])
    out["p (Holm)"] = stats.holm(out["p (test set)"].to_numpy(float)) if len(out) else []
    out["Test"] = TEST_SET_ONLY
    out["Seeds"] = 1
    out.attrs["baseline"] = base
    return report.round_floats(out, 4)


def comparison_note(P: dict, pool: Pool) -> str:
    n = len(pool.labels)
    note = (f"Evidence: one target model per loss (seed {P['seed']}) and {P['n_ref']} reference models per loss; "
            f"{n // 2} members and {n // 2} non-members; thresholds chosen on the reference models' own members and "
            f"non-members (never on the target's). Intervals: bootstrap of the target's members and non-members "
            f"({P['n_boot']} resamples, percentile 95%). Δ AUC (these models): the {P['reference_attack']} AUC of "
            f"each loss's target model minus the {P['baseline']} target's, paired bootstrap of the pool (the test "
            f"set here), interval not adjusted for multiplicity; p (Holm): Holm over the {len(P['losses']) - 1} "
            f"losses (one family), for display. These cover the sampling of the pool's examples only, not the "
            f"retraining noise (another target of the same loss), so they compare these target models and give no "
            f"less / more leakage verdict about the losses; {verdict_how(P)} (a test over the targets, retraining "
            f"noise included). TPR at 0.1% FPR needs at least 1,000 non-members to be more than 0 or 1 step; here "
            f"there are {n // 2}.")
    if P["dataset"] == "digits":
        note += " Data: scikit-learn's digits and a small MLP: these numbers test the pipeline, not CIFAR-10."
    return note


def tables(P: dict, ev: Evaluation) -> dict[str, pd.DataFrame]:
    return {"study": study_table(P, ev), "attacks": attack_table(ev), "leakage_vs_baseline": leakage_comparison(P, ev)}


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------



def plot_roc_loglog(ev: Evaluation, attacks_: list[str]) -> Figure:
    """Log-log ROC curves, one panel per attack, one line per loss, the chance diagonal dashed;
    each panel's title names the loss whose attack AUC is highest, one legend below the panels."""
    names = list(ev.results)
    colors = report.colors_for(names)
    ncols = min(3, len(attacks_))
    nrows = math.ceil(len(attacks_) / ncols)
    n_out = int((~ev.is_member).sum())
    with report.style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(min(report.FIG_WIDTH, 3.3 * ncols + 0.3), 3.0 * nrows + 0.8),
                                 squeeze=False, sharex=True, sharey=True, layout="constrained")
        for ax, a in zip(axes.flat, attacks_):
            for name in names:
                fpr, tpr = privacy.roc_curve_points(ev.is_member, ev.results[name][a].scores)
                ax.plot(fpr, tpr, color=colors[name], linewidth=1.2, label=name)
            lo = 1.0 / max(n_out, 1)
            ax.plot([lo, 1], [lo, 1], "k--", linewidth=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(lo, 1)
            ax.set_ylim(lo, 1)
            best = max(names, key=lambda n: ev.metrics[n][a]["auc"])
            ax.set_title(f"{a} (highest AUC: {best} {ev.metrics[best][a]['auc']:.2f})", fontsize=9)
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
        for ax in axes.flat[len(attacks_):]:
            fig.delaxes(ax)
        handles = [plt.Line2D([], [], color=colors[n], linewidth=1.5) for n in names]
        fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 5), title="loss (AUCs: attacks table)")
    return report._ticks(fig)


def plot_privacy_utility(P: dict, ev: Evaluation) -> Figure:
    """Target test accuracy against the reference attack's TPR at 0.1% FPR and against its AUC."""
    ra = P["reference_attack"]
    colors = report.colors_for(list(ev.metrics))
    with report.style():
        fig, axes = plt.subplots(1, 2, figsize=(report.FIG_WIDTH, 4.2), layout="constrained")
        for ax, key, label in ((axes[0], "tpr@0.1%fpr", "TPR at 0.1% FPR"), (axes[1], "auc", "attack AUC")):
            for name, d in ev.metrics.items():
                x, y = d[ra][key], 100 * ev.accuracy[name]["test"]
                ax.scatter([x], [y], color=colors[name], s=36)
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=report.MIN_FONT)
            ax.set_xlabel(f"{label} ({ra})")
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

HEADLINE_ABOUT = ("the study's table: per loss, the target model's accuracy on its members (train) and non-members "
                  "(test), and the study attack's accuracy, precision, recall and F1 at the threshold chosen on the "
                  "reference models, its AUC with a bootstrap interval, and the TPR at 1% / 0.1% FPR of the study and "
                  "reference attacks; rounded to 3 decimals")


def save(P: dict, run_dir: Path, pool: Pool, trained: dict[str, Models], ev: Evaluation,
         tabs: dict[str, pd.DataFrame]) -> list[str]:
    """The run record: every model's logits and per-example losses on the pool (with ``in_train``),
    metrics.json (the study table as headline, every attack's metrics and threshold), tables."""
    pw = record.PredictionWriter()
    for name, t in trained.items():
        roles = model_roles(P, pool)
        for k, (role, seed, mask) in enumerate(roles):
            z, l = (t.target_logits, t.target_loss) if role == "target" else (t.ref_logits[k - 1], t.ref_loss[k - 1])
            pw.add(name, "pool", seed, pool.ids, pool.labels, z, l, group=role, in_train=mask.astype(np.int8))
    built = loss_modules(P)
    methods = {name: {"config": repr(built[name]), "accuracy": ev.accuracy[name],
                      "attacks": {a: {**{k: v for k, v in m.items() if not k.endswith("_ci")},
                                      "auc_ci": list(m["auc_ci"]), "tpr1_ci": list(m["tpr1_ci"]),
                                      "threshold": float(ev.results[name][a].threshold)}
                                  for a, m in ev.metrics[name].items()}}
               for name in trained}
    extra = {"baseline": P["baseline"], "dataset": P["dataset"], "classes": list(pool.classes),
             "pool": len(pool.labels), "n_ref": P["n_ref"], "study_attack": P["study_attack"],
             "reference_attack": P["reference_attack"],
             "scores": "logits of every model on every pool example; field_in_train marks its training set",
             "sample_loss": "each model's own training loss per example (flooding: its base loss)"}
    return record.save_run(run_dir, EXPERIMENT, P, methods=methods,
                           headline=("study", tabs["study"], HEADLINE_ABOUT), tables=tabs, predictions=pw,
                           score_kind="logit", extra=extra, table_index=False)
