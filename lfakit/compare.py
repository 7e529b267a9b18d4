"""``lfakit compare``: compare the methods (losses) of many runs over their seeds, from run records.

Input is a sweep folder (its ``sweep.json`` names the run folders of its points), an
experiment's results folder (every complete run folder in it), or one run folder. Everything is
read through :func:`lfakit.record.load_run`: the saved test predictions, not the printed tables.

What is compared
    A *method* is a loss of a run (``record.predictions.method``); when the runs differ in a
    parameter other than the seed and the losses (a grid over ``lr``, say), that parameter's
    value is added to the method's name (``zlpr [lr=0.001]``). Each method has one or more
    seeds. The methods of one seed must have been scored on the same test instances (matched by
    sample id), which holds for the runs of one sweep. The seeds share one test set (one data
    split, several trainings), or each has its own: ``cf_ensemble`` draws data and split per seed,
    and membership_inference's ``paper`` profile samples an overlapping pool per seed.

The statistics (``lfakit.stats``), per data group (a data set, a ratio/fold) and challenger
against the baseline:

* the metric per seed, its mean and standard deviation (ddof 1) over seeds;
* ``delta``: the seed-mean metric of the challenger minus the baseline's, per class and for the
  mean over classes;
* its 95% interval: the paired bootstrap over the test instances (one resample applied to every
  seed of both methods; stratified by label for AUROC), :func:`lfakit.stats.seed_paired_bootstrap`;
  percentile, or BCa through ``scipy.stats.bootstrap`` (``ci_method="bca"``). Seeds with their
  own test sets are resampled each on its own and their replicates averaged
  (:func:`lfakit.stats.independent_seed_bootstrap`); membership seeds with their own overlapping
  pools are resampled over the union of the pools (:func:`lfakit.stats.union_seed_bootstrap`);
* the per-class test, for AUROC: DeLong per class and seed (``per_seed`` table), **combined
  across seeds by DeLong's contrast test of the seed-mean difference**
  (:func:`lfakit.stats.delong_contrast`): the difference of the two methods' mean AUROC over
  their seeds, with the full DeLong covariance of all of those AUROCs, which share one test set.
  It tests the test-set variation of the seed-averaged difference (the trained models held
  fixed); the seed-to-seed spread is the ``std`` column beside it. For other metrics, and for
  the mean over classes, the test is the bootstrap's p-value;
* Holm's correction (:func:`lfakit.stats.holm`) over the classes and challengers of a group (the
  per-class family), and separately over the challengers' mean-over-classes tests;
* ``Winner``: the better method only where the Holm-corrected p-value is below ``alpha``
  ("higher is better" for AUROC and correlations, "lower is better" for membership leakage);
  otherwise ``tie (n.s.)``.

Written to ``out`` (default ``<folder>/comparison/<metric>-vs-<baseline>/``): ``summary``,
``per_class`` (several classes only) and ``per_seed`` (AUROC only) tables as CSV, Markdown and
LaTeX, ``deltas.csv`` and ``forest.png`` (the deltas with their intervals, significant ones in
colour), ``seeds.csv`` and ``seeds.png`` (each method's metric per seed with its mean ± sd) and
``comparison.json`` (schema ``lfakit.compare/1``: experiment, metric, baseline, source, runs,
evidence, files). Nothing is read from the printed notebooks.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lfakit import params, stats
from lfakit.errors import DataError, ParameterError, close_matches
from lfakit.record import METRICS, DamagedRun, RunRecord, load_run

SCHEMA = "lfakit.compare/1"
# parameters that say which method / seed a run trained, not what configuration it is
_NOT_CONFIG = ("seed", "seeds", "losses", "baseline", "run_dir", "resume", "progress", "num_threads", "workers",
               "device", "interactive")


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    higher_is_better: bool
    kind: str  # auroc | srcc | plcc | attack
    about: str


METRICS_BY_NAME = {
    "auroc": Metric("auroc", "AUROC", True, "auroc", "AUROC per class from the class's logit (class labels: each "
                    "class against the rest), ties 1/2"),
    "srcc": Metric("srcc", "SRCC", True, "srcc", "Spearman rank correlation of the predicted scores with the MOS"),
    "plcc": Metric("plcc", "PLCC", True, "plcc", "Pearson correlation of the raw predicted scores with the MOS"),
    # membership leakage of the run's reference attack (LiRA / RMIA ...), re-run from the saved logits:
    # lower is better
    "tpr@1%fpr": Metric("tpr@1%fpr", "TPR@1%FPR", False, "attack", "the reference attack's TPR at 1% FPR on the "
                        "target model's members vs non-members (observed ROC points, no interpolation)"),
    "tpr@0.1%fpr": Metric("tpr@0.1%fpr", "TPR@0.1%FPR", False, "attack", "the reference attack's TPR at 0.1% FPR"),
    "attack_auc": Metric("attack_auc", "attack AUC", False, "attack", "the reference attack's ROC AUC"),
}
# experiment -> (metrics it supports, default metric, split compared)
EXPERIMENT_METRICS = {
    "chestxray_zlpr": (("auroc",), "auroc", "test"),
    "cifar_fece": (("auroc",), "auroc", "test"),
    "cf_ensemble": (("auroc",), "auroc", "test"),
    "iqa_losses": (("srcc", "plcc"), "srcc", "test"),
    "membership_inference": (("tpr@1%fpr", "tpr@0.1%fpr", "attack_auc"), "tpr@1%fpr", "pool"),
    # your own data: AUROC for the classification tasks, SRCC (or PLCC) for task=score (see _default_metric)
    "own_data": (("auroc", "srcc", "plcc"), "auroc", "test"),
}


def _default_metric(exp: str, records) -> str:
    """The metric compare uses when --metric is not given: the experiment's, except that own_data
    runs of ``task=score`` are compared by SRCC."""
    if exp == "own_data" and records and all((r.params or {}).get("task") == "score" for r in records):
        return "srcc"
    return EXPERIMENT_METRICS[exp][1]


# --------------------------------------------------------------------------------------------
# finding the runs
# --------------------------------------------------------------------------------------------


@dataclass
class Source:
    folder: Path
    kind: str  # sweep | results | run
    run_dirs: list[Path]
    not_used: list[str] = field(default_factory=list)  # why a point or folder was left out
    experiment: str | None = None  # a sweep's experiment: its runs must be of it


def _complete(run_dir: Path) -> bool:
    return (run_dir / METRICS).exists() and (run_dir / "manifest.json").exists()


#: the file that marks a rehearsal's run folder (``lfakit run --rehearse``, :mod:`lfakit.rehearse`);
#: compare, report and a sweep's reuse of complete runs never count such a run
REHEARSAL_FILE = "rehearsal.json"


def is_rehearsal(run_dir: Path) -> bool:
    """Whether ``run_dir`` is a rehearsal's run folder (it holds :data:`REHEARSAL_FILE`)."""
    return (Path(run_dir) / REHEARSAL_FILE).exists()


_REHEARSAL_NOTE = "a rehearsal (lfakit run --rehearse: a few batches, one epoch), never compared"


def _looks_like_results_root(folder: Path) -> list[str]:
    """The experiment folders under ``folder`` when it is a results root (``results/``)."""
    from lfakit.catalog import EXPERIMENTS

    return sorted(d.name for d in folder.iterdir() if d.is_dir() and d.name in EXPERIMENTS)


def _sweep_run_dir(folder: Path, experiment: str, recorded: str) -> Path | None:
    """Where a sweep point's run folder is: the run id (the recorded path's last part) in the
    sweep's experiment folder (``results/<experiment>/`` above ``sweeps/<id>/``), so that a sweep
    copied off a cluster finds its runs beside it; else the recorded path itself when it is a
    run folder of that experiment. Never a path elsewhere, and never through a link."""
    name = Path(recorded).name
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        return None
    candidates = []
    if folder.parent.name == "sweeps":
        candidates.append(folder.parent.parent / name)
    rec = Path(recorded)
    if rec.is_absolute() and rec.parent.name == experiment:
        candidates.append(rec)
    for c in candidates:
        if not c.is_symlink() and c.is_dir() and _complete(c):
            return c
    return None


def find_runs(folder: str | Path) -> Source:
    """The complete run folders of a sweep folder, a results folder or one run folder."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise ParameterError(f"{folder} is not a folder; give a sweep folder (with sweep.json), an experiment's "
                             "results folder (results/<experiment>) or a run folder")
    sweep_file = folder / "sweep.json"
    if sweep_file.exists() or sweep_file.is_symlink():
        try:
            if sweep_file.is_symlink() or not sweep_file.is_file():  # a link or a FIFO is never read
                raise ValueError("not a regular file")
            manifest = json.loads(sweep_file.read_text())
            points = manifest["points"]
            if not isinstance(points, list):
                raise TypeError("points is not a list")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as e:
            raise DataError(f"{folder}/sweep.json is damaged ({type(e).__name__}: {str(e)[:120]}); compare its runs "
                            f"through the experiment's results folder instead: lfakit compare {folder.parent.parent}"
                            ) from None
        experiment = str(manifest.get("experiment") or folder.parent.parent.name)
        runs, not_used = [], []
        for p in points:
            p = p if isinstance(p, dict) else {}
            rd = (_sweep_run_dir(folder, experiment, p["run_dir"])
                  if isinstance(p.get("run_dir"), str) and p["run_dir"] else None)
            if p.get("status") in ("complete", "skipped") and rd is not None and is_rehearsal(rd):
                not_used.append(f"point {p.get('index')}: {rd.name} is {_REHEARSAL_NOTE}")
            elif p.get("status") in ("complete", "skipped") and rd is not None:
                runs.append(rd)
            else:
                why = str(p.get("error") or "").strip().splitlines()[:1]
                if p.get("status") in ("complete", "skipped"):
                    why = [f"its run folder {p.get('run_dir')!r} is not a complete run of {experiment} beside the "
                           "sweep"]
                not_used.append(f"point {p.get('index')} ({p.get('status')}){': ' + why[0] if why else ''}")
        return Source(folder, "sweep", runs, not_used, experiment=experiment)
    if (folder / METRICS).exists():
        if is_rehearsal(folder):
            raise ParameterError(f"{folder} is {_REHEARSAL_NOTE}; its numbers say nothing about the losses. Compare "
                                 "the runs of the profile itself (lfakit run <experiment> --profile <profile>)")
        if not _complete(folder):
            raise DataError(f"{folder} has no manifest.json: the run did not finish")
        return Source(folder, "run", [folder])
    exps = _looks_like_results_root(folder)
    if exps:
        with_runs = [e for e in exps if any(_complete(d) for d in (folder / e).iterdir() if d.is_dir())] or exps
        raise ParameterError(f"{folder} is a results folder holding several experiments ({', '.join(exps)}); "
                             f"compare one experiment at a time: lfakit compare {folder / with_runs[0]}")
    runs, not_used = [], []
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in ("sweeps", "comparison")):
        if d.is_symlink():
            not_used.append(f"{d.name} (a symbolic link; copy the run folder here to compare it)")
        elif is_rehearsal(d):
            not_used.append(f"{d.name} ({_REHEARSAL_NOTE})")
        elif _complete(d):
            runs.append(d)
        elif (d / "params.yaml").exists():
            not_used.append(f"{d.name} (not complete)")
    return Source(folder, "results", runs, not_used)


def load_records(src: Source) -> list[RunRecord]:
    """Every run of ``src`` whose record is intact (:func:`lfakit.record.load_run`, which checks
    the manifest's sizes and SHA-256s). A damaged run is named in ``src.not_used`` with its file
    and reason, and left out; the others are read."""
    records = []
    for d in src.run_dirs:
        try:
            r = load_run(d)
        except DamagedRun as e:
            src.not_used.append(f"{d.name} (damaged: {e.short})")
            continue
        except DataError as e:
            src.not_used.append(f"{d.name} ({e})")
            continue
        if src.experiment and r.experiment != src.experiment:
            src.not_used.append(f"{d.name} (a run of {r.experiment}, not of the sweep's {src.experiment})")
            continue
        records.append(r)
    src.run_dirs = [r.run_dir for r in records]
    return records


# --------------------------------------------------------------------------------------------
# the evaluation data: per group, method and seed, the aligned test targets and scores
# --------------------------------------------------------------------------------------------


@dataclass
class Block:
    """One data group's test data: the shared targets and every method's per-seed scores."""

    group: str
    sample_id: np.ndarray
    y: np.ndarray  # (N,) or (N, C)
    scores: dict[str, dict[int, np.ndarray]]  # method -> seed -> (N,) or (N, C)
    classes: list[str]
    runs: dict[str, set[str]] = field(default_factory=dict)  # method -> run folders
    y_seed: dict[int, np.ndarray] | None = None  # per-seed targets: membership splits, or per-seed test sets
    ids_seed: dict[int, np.ndarray] | None = None  # per-seed test sets (y is None): their sample ids
    n_train_seed: dict[int, int] | None = None  # per-seed test sets: the size of the seed's training split

    @property
    def independent(self) -> bool:
        """Each seed has its own test set (independent evaluations) or, for membership, its own
        (overlapping) pool."""
        return self.ids_seed is not None

    @property
    def one_pool(self) -> bool:
        """The seeds' own test sets overlap: each seed re-split one pool (cf_ensemble's digits), so
        their results are correlated through shared instances and shared training data."""
        if not self.independent:
            return False
        sets = list(self.ids_seed.values())
        return any(np.intersect1d(a, b).size for i, a in enumerate(sets) for b in sets[i + 1:])


def _config_label(records: list[RunRecord]) -> dict[Path, str]:
    keys = sorted({k for r in records for k in r.params} - set(_NOT_CONFIG))
    varying = [k for k in keys if len({json.dumps(r.params.get(k), sort_keys=True, default=str) for r in records}) > 1]
    out = {}
    for r in records:
        out[r.run_dir] = ", ".join(f"{k}={r.params.get(k)}" for k in varying)
    return out


def _targets_scores(experiment: str, targets: np.ndarray, scores: np.ndarray, metric: Metric):
    """The metric's (y, s) from a record's stored targets (N, T) and scores (N, K)."""
    if metric.kind == "auroc":
        if targets.shape[1] == 1 and scores.shape[1] > 1:  # class labels: each class against the rest, on its
            labels = targets[:, 0].astype(int)  # own one-vs-rest logit (cifar_fece's losses are one-vs-rest)
            return np.eye(scores.shape[1], dtype=int)[labels], scores
        if targets.shape[1] != scores.shape[1]:
            raise DataError(f"{experiment}: {targets.shape[1]} target columns for {scores.shape[1]} score columns")
        return targets.astype(int), scores
    return targets[:, 0].astype(float), scores[:, 0]


def _attack_fn(metric: Metric):
    from lfakit.metrics import privacy

    if metric.name == "attack_auc":
        from sklearn.metrics import roc_auc_score

        return lambda y, s: roc_auc_score(y, s) if 0 < y.sum() < len(y) else np.nan
    fpr = {"tpr@1%fpr": 0.01, "tpr@0.1%fpr": 0.001}[metric.name]
    return lambda y, s: privacy.tpr_at_fpr(y, s, fpr) if 0 < y.sum() < len(y) else np.nan


def _check_finite(a, run_dir: Path, method: str, seed: int, group: str, what: str) -> None:
    """A NaN or infinite score (a training that diverged) is named with its run, method and seed."""
    a = np.asarray(a, dtype=float)
    bad = ~np.isfinite(a)
    if bad.any():
        where = f", group {group}" if group else ""
        raise DataError(f"{run_dir}: {method}, seed {seed}{where} has {int(bad.sum())} non-finite {what} of "
                        f"{a.size} (the training diverged?); rerun it, or move that run folder out of the folder "
                        "compared")


def _attack_options(P: dict):
    """The run's attack conventions; a setting added since the run was written takes the value the
    kit used before it existed (so an older record is attacked as it was)."""
    from lfakit import attacks

    old = {"lira_center": "mean", "lira_offline_test": "one_sided", "lira_fixed_sd": "separate", "rmia_trim": 0.0,
           "rmia_signal": "softmax", "rmia_temperature": 1.0, "rmia_margin": 0.6, "rmia_taylor_order": 4,
           "rmia_population": "all", "rmia_self_vote": "excluded", "rmia_tune_a": False}
    g = {**old, **P}
    a = ("tune" if g["rmia_tune_a"] else g["rmia_a"]) if g["rmia_offline"] else None
    return attacks.AttackOptions(
        fixed_variance=g["fixed_variance"], lira_center=g["lira_center"], lira_offline_test=g["lira_offline_test"],
        lira_fixed_sd=g["lira_fixed_sd"], rmia_gamma=g["rmia_gamma"], rmia_offline_a=a, rmia_trim=g["rmia_trim"],
        rmia_signal=g["rmia_signal"], rmia_temperature=g["rmia_temperature"], rmia_margin=g["rmia_margin"],
        rmia_taylor_order=g["rmia_taylor_order"], rmia_population=g["rmia_population"],
        rmia_self_vote=g["rmia_self_vote"], seed=g["seed"])


def collect_attacks(records: list[RunRecord]) -> list[Block]:
    """membership_inference: per loss and seed, the run's reference attack re-run from the saved
    pool logits (every query) and losses of its target and reference models (as the experiment ran
    it, on its target model 0), with the target's membership as the per-seed targets."""
    from lfakit import attacks

    labels = _config_label(records)
    block = None
    pools: dict[int, tuple[np.ndarray, Path]] = {}  # seed -> (pool sample ids, the run that first had them)
    for r in sorted(records, key=lambda r: r.run_dir.name):
        P, pr = r.params, r.predictions
        if pr is None or "in_train" not in pr.fields:
            raise DataError(f"{r.run_dir}: no pool predictions with field_in_train; it is not a membership run record")
        attack = P["reference_attack"]
        for method in pr.methods():
            name = f"{method} [{labels[r.run_dir]}]" if labels[r.run_dir] else method
            t = pr.select(method=method, split="pool", group="target")
            order = np.argsort(t.sample_id, kind="stable")
            refs = [pr.select(method=method, split="pool", group=g) for g in pr.groups() if g.startswith("ref")]
            refs = [q for q in refs if len(q)]
            # queries: split pool (identity) and pool_q<q> (runs from before queries have pool only)
            qsplits = ["pool"] + sorted((s for s in pr.splits() if s.startswith("pool_q")), key=lambda s: int(s[6:]))

            def _queried(group: str) -> np.ndarray:
                blocks = [pr.select(method=method, split=s, group=group) for s in qsplits]
                return np.stack([b.scores[np.argsort(b.sample_id, kind="stable")] for b in blocks], 1)

            tz = _queried("target")
            ref_logits = np.stack([_queried(q.group[0]) for q in refs]) if refs else None
            ref_loss = np.stack([q.sample_loss[np.argsort(q.sample_id, kind="stable")] for q in refs]) if refs else None
            ref_in = np.stack([q.fields["in_train"][np.argsort(q.sample_id, kind="stable")] for q in refs]).astype(bool) \
                if refs else np.zeros((0, len(t)), bool)
            members = t.fields["in_train"][order].astype(bool)
            _check_finite(t.scores, r.run_dir, method, int(t.seed[0]), "target", "pool logits")
            _check_finite(t.sample_loss, r.run_dir, method, int(t.seed[0]), "target", "pool losses")
            for q in refs:
                _check_finite(q.scores, r.run_dir, method, int(t.seed[0]), q.group[0], "pool logits")
                _check_finite(q.sample_loss, r.run_dir, method, int(t.seed[0]), q.group[0], "pool losses")
            proto = attacks.Protocol(members=members, ref_in=ref_in, seed=P["seed"])
            res = attacks.run_attacks(tz, t.sample_loss[order], t.targets[order, 0].astype(int),
                                      ref_logits, ref_loss, proto, attacks=(attack,), options=_attack_options(P))
            ids = np.asarray(t.sample_id)[order]
            seed = int(t.seed[0])
            if block is None:
                block = Block("", ids, members.astype(int), {}, [f"members ({attack})"], y_seed={})
            if seed not in pools:
                pools[seed] = (ids, r.run_dir)
            elif not np.array_equal(ids, pools[seed][0]):  # a seed's pool is drawn from its seed (pool_size)
                raise DataError(f"seed {seed}: {r.run_dir} attacked another pool than {pools[seed][1]} "
                                f"({len(ids)} vs {len(pools[seed][0])} samples); compare runs of the same pool "
                                "parameters (dataset, pool_size, data_dir)")
            if seed in block.y_seed and not np.array_equal(block.y_seed[seed], members.astype(int)):
                raise DataError(f"{r.run_dir}: seed {seed} has another membership split than an earlier run's")
            block.y_seed[seed] = members.astype(int)
            block.scores.setdefault(name, {})[seed] = res[attack].scores
            block.runs.setdefault(name, set()).add(str(r.run_dir))
    if block is None:
        raise DataError("no membership predictions in these runs")
    first = next(iter(pools.values()))[0]
    if any(not np.array_equal(ids, first) for ids, _ in pools.values()):  # each seed drew its own pool
        block.sample_id, block.y = None, None
        block.ids_seed = {k: pools[k][0] for k in sorted(pools)}
    return [block]


def collect(records: list[RunRecord], metric: Metric, split: str) -> list[Block]:
    """Per data group, the test targets and every method's per-seed scores, rows matched by sample
    id. Every method of one seed must have the same test instances and targets. When all seeds
    share one test set (one data split, several trainings) the block holds it once (``y``); when
    each seed drew its own data or split (``cf_ensemble``) it holds them per seed (``y_seed``,
    ``ids_seed``). Runs of one configuration that repeat a (method, seed) keep the latest run."""
    labels = _config_label(records)
    n_train: dict[tuple[str, int], int] = {}  # (group, seed) -> training-split size, where the record has it
    for r in records:
        if r.predictions is not None:
            tr = r.predictions.select(split="train")
            for group in tr.groups():
                for sd in tr.select(group=group).seeds():
                    meth = tr.select(group=group, seed=sd).methods()[0]
                    n_train[group, int(sd)] = len(tr.select(group=group, seed=sd, method=meth))
    found: dict[str, dict] = {}  # group -> {"seeds": {seed: (ids, y, run)}, "scores", "runs", "classes"}
    for r in sorted(records, key=lambda r: r.run_dir.name):  # run ids start with their time: the latest wins
        if r.predictions is None:
            raise DataError(f"{r.run_dir} has no predictions.npz; {r.experiment} cannot be compared from its record")
        pr = r.predictions
        classes = [str(c) for c in r.extra.get("classes", [])]
        for group in pr.groups():
            g = found.setdefault(group, {"seeds": {}, "scores": {}, "runs": {}, "classes": classes})
            for method in pr.methods():
                name = f"{method} [{labels[r.run_dir]}]" if labels[r.run_dir] else method
                for seed in pr.seeds():
                    sel = pr.select(method=method, split=split, seed=seed, group=group)
                    if len(sel) == 0:
                        continue
                    order = np.argsort(sel.sample_id, kind="stable")
                    ids = np.asarray(sel.sample_id)[order]
                    y, sc = _targets_scores(r.experiment, np.asarray(sel.targets)[order],
                                            np.asarray(sel.scores)[order], metric)
                    _check_finite(sc, r.run_dir, method, seed, group, f"{split} scores")
                    seen = g["seeds"].get(int(seed))
                    if seen is None:
                        g["seeds"][int(seed)] = (ids, y, r.run_dir)
                    elif len(ids) != len(seen[0]) or not np.array_equal(ids, seen[0]):
                        raise DataError(
                            f"group {group or '(none)'}, seed {seed}: {r.run_dir} scored other {split} instances than "
                            f"{seen[2]} ({len(ids)} vs {len(seen[0])} samples); compare runs of one data split (one "
                            "sweep, or runs with the same data parameters)")
                    elif not np.array_equal(np.asarray(y, dtype=float), np.asarray(seen[1], dtype=float)):
                        raise DataError(f"group {group or '(none)'}, seed {seed}: {r.run_dir} has other {split} targets "
                                        f"for the same sample ids than {seen[2]}")
                    g["scores"].setdefault(name, {})[int(seed)] = sc
                    g["runs"].setdefault(name, set()).add(str(r.run_dir))
    if not any(g["seeds"] for g in found.values()):
        raise DataError(f"no {split} predictions in these runs")
    blocks = []
    for group in sorted(found):
        g = found[group]
        if not g["seeds"]:
            continue
        seeds = sorted(g["seeds"])
        ids0, y0, _ = g["seeds"][seeds[0]]
        ncls = y0.shape[1] if y0.ndim == 2 else 1
        names = g["classes"] if len(g["classes"]) == ncls else [f"class {j}" for j in range(ncls)]
        if ncls == 1 and metric.kind == "auroc" and y0.ndim == 2:
            names = ["positive"]
        shared = all(np.array_equal(g["seeds"][k][0], ids0) and np.array_equal(np.asarray(g["seeds"][k][1], float),
                                                                                 np.asarray(y0, float)) for k in seeds)
        if shared:
            blocks.append(Block(group, ids0, y0, g["scores"], names, g["runs"]))
        else:
            blocks.append(Block(group, None, None, g["scores"], names, g["runs"],
                                y_seed={k: g["seeds"][k][1] for k in seeds},
                                ids_seed={k: g["seeds"][k][0] for k in seeds},
                                n_train_seed={k: n_train[group, k] for k in seeds if (group, k) in n_train}))
    return blocks


# --------------------------------------------------------------------------------------------
# the comparison
# --------------------------------------------------------------------------------------------


def _p(v: float) -> str:
    if v is None or not np.isfinite(v):
        return "—"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _winner(delta: float, p_holm: float, alpha: float, challenger: str, baseline: str, higher: bool) -> str:
    if not np.isfinite(p_holm) or not np.isfinite(delta):
        return "untestable"
    if p_holm >= alpha:
        return "tie (n.s.)"
    return challenger if (delta > 0) == higher else baseline


def _stack(per_seed: dict[int, np.ndarray]) -> np.ndarray:
    return np.stack([per_seed[k] for k in sorted(per_seed)])


@dataclass
class Comparison:
    experiment: str
    metric: Metric
    baseline: str
    source: Source
    summary: pd.DataFrame
    per_class: pd.DataFrame
    per_seed: pd.DataFrame
    evidence: str
    out_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)
    raw: pd.DataFrame | None = None  # numeric per-class / mean rows (the forest plot's data)
    seeds: pd.DataFrame | None = None  # [Group,] Method, Seed, the metric (mean over classes): plot_seeds' data

    def text(self) -> str:
        """What ``lfakit compare`` prints: the summary table, the per-class rows that are not
        ties, and the evidence sentence."""
        out = [f"{self.experiment}: {self.metric.label} vs {self.baseline}", "", self.summary.to_markdown(index=False)]
        if len(self.per_class) and "Winner" in self.per_class:
            sig = self.per_class[~self.per_class["Winner"].isin(("tie (n.s.)", "untestable", "—", NO_VERDICT))]
            out += ["", f"per class: {len(sig)} of {len(self.per_class)} differences significant after Holm"]
            if len(sig):
                out.append(sig.to_markdown(index=False))
        elif len(self.per_class):
            out += ["", f"per class: {len(self.per_class)} test-set differences of these models (one seed per "
                        "method: no verdict); see per_class.md"]
        out += ["", self.evidence]
        if self.source.not_used:
            out += ["", f"left out ({len(self.source.not_used)}):", *(f"  {why}" for why in self.source.not_used)]
        return "\n".join(out)


def _match(names: list[str], cand: str) -> list[str]:
    """The methods ``cand`` names: itself, else the methods of that loss (``focal [lr=0.1]``)."""
    return [cand] if cand in names else [n for n in names if n.split(" [")[0] == cand]


def _resolve_baseline(block: Block, baseline: str | None, default: str | None, blocks: list[Block]) -> str:
    """The baseline method of ``block``: ``baseline`` (``--baseline``), else the runs' own baseline
    loss (``default``), else the first method. A loss name matches the methods of that loss; where
    a grid made several of them (``focal [lr=0.1]``, ``focal [lr=0.01]``) the full name is needed.
    A baseline that other data groups have and this one lacks is named with the group."""
    names = list(block.scores)
    where = f" in group {block.group!r}" if block.group else ""
    for cand in (baseline, default):
        if cand is None:
            continue
        hits = _match(names, cand)
        if len(hits) == 1:
            return hits[0]
        which = "--baseline" if cand == baseline else "the runs' baseline loss"
        if len(hits) > 1:
            raise ParameterError(f"{which} {cand!r} names {len(hits)} methods of these runs{where}: "
                                 f"{'; '.join(hits)}. Give one of them in full, e.g. --baseline {hits[0]!r}")
        if any(_match(list(b.scores), cand) for b in blocks if b is not block):
            raise DataError(f"{which} {cand!r} has no runs{where}, which has {', '.join(names)}; compare a folder "
                            "whose groups all have the baseline, or give --baseline a method that every group has")
        if cand == baseline:
            every = list(dict.fromkeys(n for b in blocks for n in b.scores))
            raise ParameterError(f"--baseline {baseline!r} is not a method of these runs; they have "
                                 f"{', '.join(every)}.{close_matches(baseline, every)}")
    return names[0]


def compare_records(records: list[RunRecord], source: Source, baseline: str | None = None, metric: str | None = None,
                    alpha: float = 0.05, n_boot: int = 1000, seed: int = 0, ci_method: str = "percentile") -> Comparison:
    """The comparison of :mod:`lfakit.compare`'s docstring, from loaded run records."""
    experiments = sorted({r.experiment for r in records})
    if len(experiments) != 1:
        raise DataError(f"these runs belong to several experiments ({', '.join(experiments)}); compare one at a time")
    exp = experiments[0]
    if exp not in EXPERIMENT_METRICS:
        raise ParameterError(f"{exp} cannot be compared by lfakit compare: its record has no per-instance scores of a "
                             f"supported metric (supported: {', '.join(EXPERIMENT_METRICS)})")
    allowed, default_metric, split = EXPERIMENT_METRICS[exp]
    mname = (metric or _default_metric(exp, records)).lower()
    if mname not in allowed:
        raise ParameterError(f"--metric {metric!r} is not available for {exp}; choose {' | '.join(allowed)}")
    if not 0 < alpha < 1:
        raise ParameterError(f"--alpha must lie in (0, 1), got {alpha}")
    if ci_method not in ("percentile", "bca"):
        raise ParameterError(f"ci_method must be percentile or bca, got {ci_method!r}")
    if n_boot < 100:
        raise ParameterError(f"--n-boot {n_boot} is too few resamples for a 95% interval; use at least 100 (1000 default)")
    m = METRICS_BY_NAME[mname]
    blocks = collect_attacks(records) if m.kind == "attack" else collect(records, m, split)
    default_base = next((r.extra.get("baseline") or r.params.get("baseline") for r in records
                         if r.extra.get("baseline") or r.params.get("baseline")), None)
    if all(len(b.scores) < 2 for b in blocks):
        one = sorted({n for b in blocks for n in b.scores})
        raise DataError(f"these runs have one method ({', '.join(one)}): nothing to compare it with; add runs of "
                        "another loss (a sweep over losses, or losses=[...] with two or more)")
    resolution_note = _check_resolution(blocks, m, n_boot, alpha)
    summary_rows, class_rows, seed_rows, raw_rows, value_rows = [], [], [], [], []
    bases: dict[str, str] = {}  # group -> its baseline method
    for b in blocks:
        base = bases[b.group] = _resolve_baseline(b, baseline, default_base, blocks)
        ncls = len(b.classes)
        for name in b.scores:
            per_seed_vals = _per_seed_metric(b, name, m)  # (S, C)
            mean_over_cls = np.nanmean(per_seed_vals, axis=1) if ncls > 1 else per_seed_vals[:, 0]
            row = {"Group": b.group, "Method": name, "Seeds": len(b.scores[name]),
                   f"{m.label} (mean ± std)": _mean_std(mean_over_cls)}
            value_rows += [{"Group": b.group, "Method": name, "Seed": k, m.label: float(v)}
                           for k, v in zip(sorted(b.scores[name]), mean_over_cls)]
            if name == base:
                row.update({"Δ vs baseline": "—", "95% CI": "—", "p": "—", "p (Holm)": "—", "Test": "—",
                            "Winner": "baseline"})
                summary_rows.append(row)
                continue
            class_res, mean = _challenger_tests(b, base, name, m, n_boot, seed, ci_method, seed_rows)
            raw_rows.append({"group": b.group, "method": name, "class": "mean", **mean})
            row.update({"Δ vs baseline": _d(mean["delta"]), "95% CI": _ci(mean), "p": _p(mean["p_value"]),
                        "Test": _test_label(mean), "_raw": len(raw_rows) - 1})
            summary_rows.append(row)
            bm = _per_seed_metric(b, base, m)
            for j, cls in enumerate(b.classes if ncls > 1 else []):  # one target: the mean row is all there is
                raw_rows.append({"group": b.group, "method": name, "class": cls, **class_res[j]})
                class_rows.append({"Group": b.group, "Method": name, "Class": cls,
                                   f"{base} (mean ± std)": _mean_std(bm[:, j]),
                                   f"{m.label} (mean ± std)": _mean_std(per_seed_vals[:, j]),
                                   "Δ": _d(class_res[j]["delta"]), "95% CI": _ci(class_res[j]),
                                   "p": _p(class_res[j]["p_value"]), "_raw": len(raw_rows) - 1})
    raw = pd.DataFrame(raw_rows)
    # one Holm family over every verdict test of the comparison (each challenger's mean and per-class
    # rows, every data group); the test-set-only rows (one seed) form their own family, for display
    raw["p_holm"] = np.nan
    verdict = raw["kind"].isin(VERDICT_KINDS).to_numpy()
    for fam in (verdict, ~verdict):
        if fam.any():
            raw.loc[fam, "p_holm"] = stats.holm(raw.loc[fam, "p_value"].to_numpy())
    raw["winner"] = [_winner(d, ph, alpha, meth, bases[g], m.higher_is_better) if kind in VERDICT_KINDS else
                     (NO_VERDICT if np.isfinite(ph) else "untestable")
                     for d, ph, meth, g, kind in zip(raw["delta"], raw["p_holm"], raw["method"], raw["group"],
                                                     raw["kind"])]
    any_verdict = bool(verdict.any())
    for row in summary_rows:
        i = row.pop("_raw", None)
        if i is not None:
            row["p (Holm)"], row["Winner"] = _p(raw.loc[i, "p_holm"]), raw.loc[i, "winner"]
    per_class = pd.DataFrame(class_rows)
    if len(per_class):
        per_class["p (Holm)"] = [_p(raw.loc[i, "p_holm"]) for i in per_class["_raw"]]
        per_class["Winner"] = [raw.loc[i, "winner"] for i in per_class["_raw"]]
        per_class = per_class.drop(columns="_raw")
    summary, per_class, per_seed = (_drop_empty_group(df) for df in (pd.DataFrame(summary_rows), per_class,
                                                                     pd.DataFrame(seed_rows)))
    if not any_verdict:  # one trained model per method somewhere in every row: no claim about the losses
        summary, per_class = (_test_set_only(df) for df in (summary, per_class))
    base_name = next(iter(bases.values()))  # the first group's (the groups share it unless a group lacks it)
    evidence = _evidence(exp, records, source, blocks, m, base_name, n_boot, ci_method, alpha, raw, split,
                         resolution_note)
    return Comparison(exp, m, base_name, source, summary, per_class, per_seed, evidence, raw=raw,
                      seeds=_drop_empty_group(pd.DataFrame(value_rows)))


def _check_resolution(blocks: list[Block], m: Metric, n_boot: int, alpha: float) -> str | None:
    """Refuse an ``n_boot`` too small for any bootstrap-tested difference to be significant
    (:func:`lfakit.params.check_bootstrap_resolution`) where the bootstrap gives every test of the
    comparison. For AUROC over several classes the per-class tests are DeLong's, which have no
    such floor: only the mean-over-classes rows are then out of reach, and the returned note (for
    the evidence line) says so."""
    for b in blocks:
        k = len(b.scores) - 1  # the challengers
        ncls = len(b.classes)
        if m.kind == "auroc" and ncls == 1:  # the one test is DeLong's
            continue
        if min(len(v) for v in b.scores.values()) >= 2:  # seed-level t tests: the resamples give covariances only
            continue
        msg = params.check_bootstrap_resolution(k, n_boot, alpha, option="--n-boot")
        if msg and m.kind == "auroc":
            return (f"with {n_boot} resamples no mean-over-classes row can be significant after Holm over {k} "
                    f"challengers ({k}/(B + 1) >= alpha; use --n-boot {params.min_resamples(k, alpha)} or more); the "
                    "per-class DeLong tests are not affected")
        if msg:
            raise ParameterError(msg)
    return None


def _common_seeds(b: Block, base: str, name: str) -> list[int]:
    common = sorted(set(b.scores[base]) & set(b.scores[name]))
    if not common:
        raise DataError(f"{name} and {base} have no seed in common, and each seed has its own "
                        f"{'membership split' if b.ids_seed is None else 'test data'}: nothing to pair")
    return common


def _drop_empty_group(df: pd.DataFrame) -> pd.DataFrame:
    """Without the Group column where the experiment has no data groups."""
    return df.drop(columns="Group") if len(df) and (df["Group"] == "").all() else df


def _mean_std(v: np.ndarray) -> str:
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "—"
    if v.size == 1:
        return f"{v[0]:.4f}"
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}"


def _d(v: float) -> str:
    return f"{v:+.4f}" if np.isfinite(v) else "—"


def _ci(d) -> str:
    lo, hi = d["ci_low"], d["ci_high"]
    return "—" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:+.4f}, {hi:+.4f}]"


def _per_seed_metric(b: Block, name: str, m: Metric) -> np.ndarray:
    """(S, C): the method's metric per seed and class on the full test set."""
    from scipy.stats import pearsonr, spearmanr

    from lfakit.metrics.classification import auroc_columns

    out = []
    for k in sorted(b.scores[name]):
        s = b.scores[name][k]
        y = b.y if b.y is not None else b.y_seed[k]
        if m.kind == "auroc":
            y2 = y if y.ndim == 2 else y[:, None]
            s2 = s if s.ndim == 2 else s[:, None]
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append(np.asarray(auroc_columns(y2, s2), dtype=float))
        elif m.kind == "attack":
            out.append(np.array([float(_attack_fn(m)(b.y_seed[k], s))]))
        elif not np.all(np.isfinite(s)) or np.ptp(s) == 0:
            out.append(np.array([np.nan]))
        else:
            f = spearmanr if m.kind == "srcc" else pearsonr
            out.append(np.array([float(f(y, s).statistic)]))
    return np.stack(out)


#: the kinds of test that give a verdict about losses: the seed-level t over trained models
#: (:func:`lfakit.stats.seed_level_test`) and Nadeau-Bengio's corrected t over re-splits of one pool
VERDICT_KINDS = ("seeds", "re-splits")
NO_VERDICT = "no verdict (1 seed)"


def _result(delta, lo, hi, p, kind: str, k: int, df: float = math.nan, reason: str = "") -> dict:
    return {"delta": float(delta), "ci_low": float(lo), "ci_high": float(hi), "p_value": float(p), "kind": kind,
            "seeds": int(k), "df": float(df), "reason": reason}


def _from_seed_level(t: dict) -> dict:
    """A :func:`lfakit.stats.seed_level_test` result as a row; untestable (NaN p) stays of its kind."""
    k = t["k"] if isinstance(t["k"], int) else min(t["k"])
    return _result(t["delta"], t["ci_low"], t["ci_high"], t["p_value"], "seeds", k, t["df"], t["reason"])


def _test_label(r: dict) -> str:
    if r["kind"] == "seeds":
        return f"seeds (t, df {r['df']:.1f})" if np.isfinite(r["df"]) else "seeds (untestable)"
    if r["kind"] == "re-splits":
        return "re-splits (Nadeau–Bengio t)"
    return "test set only"


def _test_set_only(df: pd.DataFrame) -> pd.DataFrame:
    """The table of a comparison with one trained model per method: the differences of these
    models with their test-set intervals, labelled so, and no Winner column."""
    if not len(df):
        return df
    df = df.drop(columns=[c for c in ("Winner", "Test") if c in df])
    return df.rename(columns={"Δ vs baseline": "Δ (these models)", "Δ": "Δ (these models)",
                              "95% CI": "95% CI (test set)", "p": "p (test set)"})


def _challenger_tests(b: Block, base: str, name: str, m: Metric, n_boot: int, seed: int, ci_method: str,
                      seed_rows: list) -> tuple[list[dict], dict]:
    """The tests of ``name`` against ``base`` in block ``b``: per class (AUROC over several classes)
    and for the mean over classes (or the one target). Where each method has two or more trained
    models the test is the seed-level t (:func:`lfakit.stats.seed_level_test`): per class with
    DeLong's covariance of every model's AUROC, for the mean and other metrics with the bootstrap
    covariance of the models' values over one resampling of the test instances; seeds that
    re-split one pool (their own test sets overlap) get Nadeau-Bengio's corrected t over the
    seeds' differences. With one model of a method the rows are test-set-only: DeLong per class
    (or for one AUROC), the paired bootstrap for the mean; they give no verdict. DeLong's test of
    each pair of models of one seed goes to ``seed_rows``."""
    ncls = len(b.classes)
    kb, km = sorted(b.scores[base]), sorted(b.scores[name])
    auroc = m.kind == "auroc"

    def labels(k):
        y = b.y if b.y is not None else b.y_seed[k]
        return y if y.ndim == 2 else y[:, None]

    def col(a, j):
        return a[:, j] if a.ndim == 2 else a

    if b.independent and m.kind != "attack":  # each seed its own test set: pair the methods by seed
        common = _common_seeds(b, base, name)
        if ci_method == "bca":
            raise ParameterError("ci_method=bca needs one shared test set; these seeds each have their own "
                                 "(use the percentile interval)")
        boots = [stats.seed_paired_bootstrap(b.y_seed[k], b.scores[base][k][None], b.scores[name][k][None], m.kind,
                                             n_boot=n_boot, seed=seed + k, stratified=auroc) for k in common]
        comb = stats.independent_seed_bootstrap(boots)
        pool = b.one_pool
        if pool:
            n_test = int(round(np.mean([len(b.ids_seed[k]) for k in common])))
            known = [b.n_train_seed[k] for k in common if b.n_train_seed and k in b.n_train_seed]
            union = np.unique(np.concatenate([b.ids_seed[k] for k in common])).size
            n_train = int(round(np.mean(known))) if known else max(union - n_test, 1)

        def resplit(deltas) -> dict:
            r = stats.corrected_resampled_ttest(deltas, n_train=n_train, n_test=n_test)
            return _result(r["delta"], r["ci_low"], r["ci_high"], r["p_value"], "re-splits", r["n"], len(common) - 1)

        class_res = []
        for j, cls in enumerate(b.classes if auroc else []):
            tests = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", stats.UndefinedMetricWarning)
                for k in common:
                    yj = labels(k)[:, j]
                    if yj.min() == yj.max():
                        continue
                    t = stats.delong_test(yj, col(b.scores[base][k], j), col(b.scores[name][k], j))
                    tests.append(t)
                    seed_rows.append(_seed_row(b, name, cls, k, base, t))
            if len(common) < 2:
                t = tests[0] if tests else None
                few = stats.too_few_labels(labels(common[0])[:, j]) if t else None
                class_res.append(_result(t["delta"], math.nan, math.nan, math.nan, "test set", 1, reason=few) if few
                                 else _result(t["delta"], t["ci_low"], t["ci_high"], t["p_value"], "test set", 1)
                                 if t else _result(math.nan, math.nan, math.nan, math.nan, "test set", 0))
            elif pool:
                class_res.append(resplit([t["delta"] for t in tests]))
            else:
                class_res.append(_from_seed_level(stats.seed_level_auroc_independent(
                    [labels(k)[:, j] for k in common], [col(b.scores[base][k], j) for k in common],
                    [col(b.scores[name][k], j) for k in common])))
        if auroc and ncls == 1:
            return [], class_res[0]
        if len(common) < 2:
            mean = _result(comb["mean"]["delta"], comb["mean"]["ci_low"], comb["mean"]["ci_high"],
                           comb["mean"]["p_value"], "test set", 1)
        elif pool:
            mean = resplit([r["mean"]["delta"] for r in boots])
        else:  # block-diagonal covariance: each seed's pair of models from its own resamples
            k = len(common)
            vals, cov = np.full(2 * k, np.nan), np.zeros((2 * k, 2 * k))
            for i, r in enumerate(boots):
                (v1, v2), (r1, r2) = r["model_values"], r["model_replicates"]
                vals[i], vals[k + i] = v1[0, -1], v2[0, -1]
                cv = stats.replicate_covariance(r1[:, :, -1], r2[:, :, -1])
                cov[np.ix_([i, k + i], [i, k + i])] = cv
            mean = _from_seed_level(stats.seed_level_test(vals[:k], vals[k:], cov))
        return class_res, mean

    # one test set (or membership pool) scored by every model
    if m.kind == "attack":
        common = _common_seeds(b, base, name)
        if b.independent:  # the seeds' pools differ (and overlap): resample their union
            if ci_method == "bca":
                raise ParameterError("ci_method=bca needs one shared pool; these seeds drew their own pools "
                                     "(use the percentile interval)")
            r = stats.union_seed_bootstrap([b.ids_seed[k] for k in common], [b.y_seed[k] for k in common],
                                           [b.scores[base][k] for k in common], [b.scores[name][k] for k in common],
                                           _attack_fn(m), n_boot=n_boot, seed=seed)
        else:  # seed k of both methods shares seed k's membership split
            r = stats.seed_paired_bootstrap(np.stack([b.y_seed[k] for k in common]),
                                            np.stack([b.scores[base][k] for k in common]),
                                            np.stack([b.scores[name][k] for k in common]), _attack_fn(m),
                                            n_boot=n_boot, seed=seed, ci_method=ci_method, per_seed_targets=True)
        paired, multi = True, len(common) >= 2
    else:
        r = stats.seed_paired_bootstrap(b.y, _stack(b.scores[base]), _stack(b.scores[name]), m.kind,
                                        n_boot=n_boot, seed=seed, stratified=auroc, ci_method=ci_method)
        paired, multi = kb == km, len(kb) >= 2 and len(km) >= 2

    def boot_row(j: int, boot_p) -> dict:
        """Column ``j`` of the bootstrap's model values (-1: the mean over classes)."""
        if multi:
            (v1, v2), (r1, r2) = r["model_values"], r["model_replicates"]
            return _from_seed_level(stats.seed_level_test(v1[:, j], v2[:, j],
                                                          stats.replicate_covariance(r1[:, :, j], r2[:, :, j]),
                                                          paired=paired))
        d = r["mean"] if j == -1 else {k: r[k][j] for k in ("delta", "ci_low", "ci_high", "p_value")}
        return _result(d["delta"], d["ci_low"], d["ci_high"], boot_p, "test set", 1)

    if not auroc:
        return [], boot_row(-1, r["mean"]["p_value"])
    class_res = []
    for j, cls in enumerate(b.classes):
        yj = labels(kb[0])[:, j]
        if yj.min() == yj.max():
            class_res.append(_result(math.nan, math.nan, math.nan, math.nan, "seeds" if multi else "test set", 0,
                                     reason="one label value in the test data"))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.UndefinedMetricWarning)
            for k in sorted(set(kb) & set(km)):
                seed_rows.append(_seed_row(b, name, cls, k, base, stats.delong_test(
                    yj, col(b.scores[base][k], j), col(b.scores[name][k], j))))
            s1 = np.stack([col(b.scores[base][k], j) for k in kb])
            s2 = np.stack([col(b.scores[name][k], j) for k in km])
            if multi:
                class_res.append(_from_seed_level(stats.seed_level_auroc(yj, s1, s2, paired=paired)))
            else:
                t = stats.delong_contrast(yj, np.concatenate([s1, s2]),
                                          np.r_[np.full(len(kb), -1.0 / len(kb)), np.full(len(km), 1.0 / len(km))])
                few = stats.too_few_labels(yj)  # DeLong alone is liberal there: shown, not tested
                class_res.append(_result(t["delta"], math.nan, math.nan, math.nan, "test set", 1, reason=few) if few
                                 else _result(t["delta"], t["ci_low"], t["ci_high"], t["p_value"], "test set", 1))
    if ncls == 1:  # one AUROC: its test is the class's
        return [], class_res[0]
    return class_res, boot_row(-1, r["mean"]["p_value"])


def _seed_row(b: Block, name: str, cls: str, k: int, base: str, t: dict) -> dict:
    return {"Group": b.group, "Method": name, "Class": cls, "Seed": k, f"{base} AUROC": round(t["auc1"], 4),
            "AUROC": round(t["auc2"], 4), "Δ": round(t["delta"], 4),
            "z": round(t["z"], 3) if np.isfinite(t["z"]) else t["z"], "p (DeLong)": _p(t["p_value"])}


def _evidence(exp, records, source, blocks, m, base, n_boot, ci_method, alpha, raw: pd.DataFrame, split,
              resolution_note=None) -> str:
    """The sentence under every comparison: what its evidence covers, which test, which family."""
    seeds = sorted({k for b in blocks for v in b.scores.values() for k in v})
    per_method = sorted({len(v) for b in blocks for v in b.scores.values()})
    smoke = any(str(r.params.get("data_dir", "x")) == "" or r.extra.get("embedded") for r in records)
    independent = any(b.independent for b in blocks)
    n = sorted({len(ids) for b in blocks for ids in ((b.ids_seed or {}).values() if b.independent else [b.sample_id])})
    one = all(len(b.classes) == 1 for b in blocks)
    kinds = set(raw["kind"]) if len(raw) else set()
    where = (f"each seed its own {split} set ({'/'.join(map(str, n))} instances), paired by seed" if independent
             else f"{'/'.join(map(str, n))} {split} instances{' per group' if len(blocks) > 1 else ''}, shared by "
                  "every seed")
    if m.kind == "attack" and independent:  # membership pools drawn per seed, overlapping
        pools = list(blocks[0].ids_seed.values())
        union = np.unique(np.concatenate(pools))
        shared = pools[0]
        for q in pools[1:]:
            shared = np.intersect1d(shared, q)
        where = (f"the seeds' pools differ ({'/'.join(map(str, n))} instances each, {len(union)} in their union, "
                 f"{len(shared)} in every pool), each seed with its own membership split, paired by seed")
    cov = ("DeLong's covariance of every model's AUROC per class, the bootstrap covariance for the mean over "
           "classes" if m.kind == "auroc" and not one else
           "DeLong's covariance of every model's AUROC" if m.kind == "auroc" else
           f"the covariance of every model's {m.label} over {n_boot} bootstrap resamples of the "
           f"{'union of the pools' if m.kind == 'attack' and independent else split + ' instances'}")
    tests = []
    if "seeds" in kinds:
        tests.append("the seed-level t: each trained model is one draw of its loss, so the seed-to-seed spread "
                     "beyond the test-set noise (a moment estimate) is added to the test-set variance of the "
                     f"difference of the seed means ({cov}), paired by seed, on Welch-Satterthwaite degrees of "
                     "freedom with the seeds' spread at its 90% upper confidence bound; the 95% interval comes from "
                     "the same t")
    if "re-splits" in kinds:
        tests.append("the seeds re-split one pool, so their test sets and training sets overlap: Nadeau and "
                     "Bengio's corrected resampled t over the seeds' differences, with its interval")
    if "test set" in kinds:
        boot = (f"the paired bootstrap ({n_boot} resamples, "
                f"{'BCa via scipy.stats.bootstrap' if ci_method == 'bca' else 'percentile'} interval"
                f"{', stratified by label' if m.kind == 'auroc' else ''}; a bootstrap p-value is at least "
                f"1/(B + 1) = {1 / (n_boot + 1):.4f})")
        test_only = (f"DeLong per class, {boot} for the mean" if m.kind == "auroc" and not one else
                     "DeLong" if m.kind == "auroc" else boot)
        tests.append(f"where a method has one trained model: {test_only}, over test-set sampling only: a "
                     "difference of these models, not a verdict about the losses (run two or more seeds: "
                     "-p 'seeds=[0, 1, 2]' or lfakit sweep --seeds 0,1,2)")
    fam = raw[raw["kind"].isin(VERDICT_KINDS)] if len(raw) else raw
    n_fam = int(np.isfinite(fam["p_value"].to_numpy(float)).sum()) if len(fam) else 0
    untestable = int((~np.isfinite(raw["p_value"].to_numpy(float))).sum()) if len(raw) else 0
    rows = ("the mean and per-class rows of every challenger" if not one else "every challenger")
    parts = [
        f"Evidence: {len(records)} run(s) from a {source.kind} folder",
        f"{'/'.join(map(str, per_method))} seed(s) per method (seeds {', '.join(map(str, seeds))})",
        where,
        f"Δ = seed-mean {m.label} minus {base}'s",
        "test: " + "; ".join(tests),
    ]
    if n_fam:
        parts.append(f"one Holm family over all {n_fam} tests ({rows}{' in every data group' if len(blocks) > 1 else ''})"
                     f" at alpha = {alpha}; a Winner is named only where the corrected p < alpha")
    elif len(raw) - untestable:
        parts.append(f"Holm over the {len(raw) - untestable} test-set comparisons, for display: no Winner without "
                     "two or more trained models of each loss")
    else:
        parts.append("nothing could be tested, so no Winner")
    if resolution_note:
        parts.append(resolution_note)
    few = int(raw["reason"].astype(str).str.startswith("not tested:").sum()) if len(raw) else 0
    if untestable:
        parts.append(f"{untestable} comparison(s) untestable (a class with one label value in the test data, one "
                     "seed of a method beside several of the other, or no variance) and left out of Holm's families")
    if few:
        parts.append(f"of these, {few} class difference(s) of one pair of models not tested: fewer than "
                     f"{stats.MIN_TEST_SET_LABELS} positives or negatives, where DeLong alone is liberal")
    if len(per_method) == 1 and per_method[0] == 1:
        parts.append("with one seed per method the seed-to-seed spread is unmeasured")
    if source.not_used:
        parts.append(f"left out: {'; '.join(source.not_used)}")
    text = "; ".join(parts) + "."
    if smoke:
        text += (" These runs used the embedded default data: they test the pipeline and say nothing about the "
                 "real data set.")
    return text


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def plot_forest(c: Comparison):
    """The deltas vs the baseline with their 95% intervals: with several classes one panel per
    challenger (rows: the classes, then the mean ◆), at most four panels a row; with one target
    one panel per data group (rows: the challengers). Holm-significant rows in colour, ties grey."""
    import matplotlib.pyplot as plt

    from lfakit import report

    raw = c.raw
    methods = list(dict.fromkeys(raw["method"]))
    groups = list(dict.fromkeys(raw["group"]))
    cols = report.colors_for(methods)
    single = not (raw["class"] != "mean").any()
    if single:  # one panel per group, a row per challenger
        panels = [(g, None, raw[raw["group"] == g]) for g in groups]
    else:
        panels = []
        for g in groups:
            for mth in methods:
                d = raw[(raw["method"] == mth) & (raw["group"] == g)]
                if len(d):
                    panels.append((g, mth, pd.concat([d[d["class"] != "mean"], d[d["class"] == "mean"]])))
    ncol = min(4, len(panels))
    nrow = -(-len(panels) // ncol)
    rows = max(len(d) for _, _, d in panels)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol + 1.2, nrow * (0.9 + 0.3 * rows)), squeeze=False,
                             sharex=True)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (g, mth, d) in zip(axes.flat, panels):
        ypos = np.arange(len(d))[::-1]
        sig = ~d["winner"].isin(("tie (n.s.)", "untestable")).to_numpy()
        labels = d["method"].tolist() if single else d["class"].tolist()
        for yv, (_, r), s_ in zip(ypos, d.iterrows(), sig):
            color = cols[r["method"]] if s_ else "0.6"
            mean = r["class"] == "mean" and not single
            ax.errorbar(r["delta"], yv, xerr=[[r["delta"] - r["ci_low"]], [r["ci_high"] - r["delta"]]],
                        fmt="D" if mean else "o", color=color, ms=6 if mean else 4, capsize=2, lw=1.2)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(ypos)
        ax.set_yticklabels(labels, fontsize=9)
        ax.tick_params(axis="x", labelsize=9)
        ax.set_xlabel(f"Δ {c.metric.label} vs {c.baseline}", fontsize=9)
        title = " · ".join(t for t in (mth, g) if t)
        ax.set_title(title or f"Δ {c.metric.label}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("coloured: significant after Holm; grey: tie (n.s.)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_seeds(c: Comparison):
    """Every method's metric (the mean over classes) per seed, one dot a seed, with the mean ±
    sd over seeds (``report.plot_per_seed``, seaborn): the seed-to-seed spread beside the
    forest plot's test-set intervals. One panel per data group."""
    from lfakit import report

    d, label = c.seeds, c.metric.label
    keys = ["Group", "Method"] if "Group" in d else ["Method"]
    several = d.groupby(keys).size().max() > 1
    title = (f"{label} per seed (dots) and mean ± sd over seeds (◆)" if several
             else f"{label}: one seed per method, no seed-to-seed spread to show")
    over_classes = c.raw is not None and (c.raw["class"] != "mean").any()
    return report.plot_per_seed(d, label, "Method", panel="Group" if "Group" in d else None, title=title,
                                xlabel=f"{label} (mean over classes)" if over_classes else label)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text).strip("-") or "x"


# the tables' non-ASCII characters, as (pdf)LaTeX without extra packages typesets them
_LATEX_CHARS = {"Δ": r"$\Delta$", "±": r"$\pm$", "—": "---", "–": "--", "≥": r"$\geq$", "≤": r"$\leq$",
                "<": "$<$", ">": "$>$"}  # pandas leaves < and > as they are; pdflatex's OT1 font prints them as ¡ ¿


def _latex(df: pd.DataFrame) -> str:
    """``df`` as a LaTeX tabular (pandas' ``to_latex``: special characters escaped, booktabs
    rules), with the symbols of the headers and cells (Δ, ±, —, <) written as LaTeX commands:
    pdflatex stops at a Unicode Δ."""
    text = df.to_latex(index=False, escape=True)
    for ch, tex in _LATEX_CHARS.items():
        text = text.replace(ch, tex)
    return text


def write(c: Comparison, out: str | Path | None = None) -> Path:
    """Tables (CSV, Markdown, LaTeX), deltas.csv, seeds.csv, forest.png, seeds.png and
    comparison.json into ``out``."""
    import matplotlib.pyplot as plt

    from lfakit import report

    out_dir = Path(out) if out else c.source.folder / "comparison" / f"{c.metric.name}-vs-{_slug(c.baseline)}"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, df in (("summary", c.summary), ("per_class", c.per_class), ("per_seed", c.per_seed)):
        if not len(df):
            continue
        df.to_csv(out_dir / f"{name}.csv", index=False)
        (out_dir / f"{name}.md").write_text(df.to_markdown(index=False) + "\n")
        (out_dir / f"{name}.tex").write_text(_latex(df))
        files.update({f"{name}_csv": f"{name}.csv", f"{name}_md": f"{name}.md", f"{name}_tex": f"{name}.tex"})
    if c.raw is not None and len(c.raw):
        c.raw.to_csv(out_dir / "deltas.csv", index=False)
        files["deltas_csv"] = "deltas.csv"
        fig = plot_forest(c)
        report.save_figure(fig, out_dir / "forest.png")
        plt.close(fig)
        files["forest_png"] = "forest.png"
    if c.seeds is not None and len(c.seeds):
        c.seeds.to_csv(out_dir / "seeds.csv", index=False)
        fig = plot_seeds(c)
        report.save_figure(fig, out_dir / "seeds.png")
        plt.close(fig)
        files.update({"seeds_csv": "seeds.csv", "seeds_png": "seeds.png"})
    doc = {"schema": SCHEMA, "experiment": c.experiment, "metric": c.metric.name, "metric_about": c.metric.about,
           "higher_is_better": c.metric.higher_is_better, "baseline": c.baseline, "source": str(c.source.folder),
           "source_kind": c.source.kind, "runs": [str(p) for p in c.source.run_dirs], "not_used": c.source.not_used,
           "evidence": c.evidence, "files": files,
           "written": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    (out_dir / "comparison.json").write_text(json.dumps(doc, indent=2))
    c.out_dir, c.files = out_dir, files
    return out_dir


def compare_folder(folder: str | Path, baseline: str | None = None, metric: str | None = None,
                   out: str | Path | None = None, alpha: float = 0.05, n_boot: int = 1000, seed: int = 0,
                   ci_method: str = "percentile") -> Comparison:
    """Find the runs, compare them and write the results (what ``lfakit compare`` does)."""
    src = find_runs(folder)
    records = load_records(src)
    if not records:
        extra = f" (left out: {'; '.join(src.not_used)})" if src.not_used else ""
        raise DataError(f"no complete run in {src.folder}{extra}; run the sweep or the experiment first")
    c = compare_records(records, src, baseline=baseline, metric=metric, alpha=alpha, n_boot=n_boot, seed=seed,
                        ci_method=ci_method)
    write(c, out)
    return c


def load_comparison(out_dir: str | Path) -> dict[str, Any]:
    """A written comparison's ``comparison.json`` and its tables (DataFrames by name)."""
    out_dir = Path(out_dir)
    doc = json.loads((out_dir / "comparison.json").read_text())
    if doc.get("schema") != SCHEMA:
        raise DataError(f"{out_dir}/comparison.json has schema {doc.get('schema')!r}; this lfakit reads {SCHEMA!r}")
    doc["tables"] = {k[:-4]: pd.read_csv(out_dir / v) for k, v in doc["files"].items() if k.endswith("_csv")}
    return doc


# --------------------------------------------------------------------------------------------
# the notebook's demonstration input
# --------------------------------------------------------------------------------------------

DEMO = {"experiment": "chestxray_zlpr", "profile": "smoke",
        "overrides": {"losses": ["focal", "zlpr", "fzlpr"], "seeds": [0, 1, 2], "epochs": 3}}


def demo_run(log_output: bool = False) -> Path:
    """A small run to compare when no folder is given (``notebooks/compare.ipynb``'s default):
    ``chestxray_zlpr`` on its embedded data, three losses x three seeds, 3 epochs, one
    ``lfakit run`` into the results folder. Its run folder is returned. It demonstrates the
    comparison; on smoke data it supports no conclusion about the losses."""
    from lfakit import runner

    outcome = runner.run(DEMO["experiment"], DEMO["profile"], dict(DEMO["overrides"]), log_output=log_output)
    return outcome.run_dir
