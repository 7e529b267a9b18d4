"""CF-Ensemble with focal loss and class weighting (the CF-Ensemble focal-loss study).

Defines the notebook's parameter ``SCHEMA``. The notebook ``notebooks/cf_ensemble.ipynb`` calls,
in order: :func:`setup` (threads, seed, run folder, early input checks), :func:`load_data`,
:func:`focal_weight_table`, :func:`run_all`, :func:`evaluate`, :func:`tables`,
:func:`collapse_study`, :func:`figures` and :func:`save`. Every step reads the validated
parameter dict ``P``.

Protocol (for every data set and every seed ``seed, seed+1, ..., seed+seeds-1``): build the
ensemble (R, labels, difficulty; the seed changes the simulated data or the base classifiers'
training part), mark a stratified ``labelled_fraction`` of its instances as labelled
(``train``), hide the labels of the rest (``test``), fit every method on R with the train labels
(CF-Ensemble is transductive: it factorises all of R), and score the test instances:

* ``averaging``: the mean of the classifiers' probabilities; ``stacking``: scikit-learn's
  ``LogisticRegression()`` on R's columns (train instances);
* ``<trainer>_<configuration>`` for trainer ``als`` / ``pytorch`` and configuration
  ``baseline`` (no weighting), ``class_weights``, ``focal`` (gamma = ``focal_gamma``), ``both``.

Metrics on test: PR-AUC (average precision, scikit-learn), ROC-AUC, and accuracy at the
aggregator's own decision rule ``p > 0.5`` on the easy and on the hard instances; plus the
spread (std) of the predictions and the share predicted positive, which expose a collapsed
aggregator. Comparisons are paired over seeds (same data, split and initial factors).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from lfakit import record, report, runtime
from lfakit import ensemble as cfe
from lfakit.data import ensemble_data as edata
from lfakit.errors import ParameterError
from lfakit.experiments._shared import open_checked_run
from lfakit.schemas.cf_ensemble import EXPERIMENT
from lfakit.stats import aggregate_seeds, corrected_resampled_ttest, holm

CONFIGS = ("baseline", "class_weights", "focal", "both")
CONFIG_LABELS = {
    "baseline": "baseline (no weighting)",
    "class_weights": "class weights only",
    "focal": "focal only",
    "both": "both (class + focal)",
}
BASELINES = ("averaging", "stacking")
THRESHOLD = 0.5
FOCAL_TABLE_PT = (0.1, 0.3, 0.5, 0.51, 0.6, 0.8, 0.95)
FOCAL_TABLE_GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)



def preflight(P: dict) -> None:
    """scikit-learn (the digits data and the stacking baseline); ``lfakit run`` calls it too."""
    try:
        import sklearn  # noqa: F401
    except ImportError:  # pragma: no cover - a dependency of the kit
        raise ParameterError("scikit-learn is needed for the digits data and the stacking baseline: pip install scikit-learn") from None


def setup(P: dict) -> Path:
    """Fix threads and seeds, check inputs before any work, and open the run folder."""
    return open_checked_run(P, EXPERIMENT, preflight)


def seed_list(P: dict) -> list[int]:
    return [P["seed"] + k for k in range(P["seeds"])]


# --------------------------------------------------------------------------- data


def load_data(P: dict) -> dict[tuple[str, int], tuple[edata.EnsembleSet, np.ndarray]]:
    """(data set, seed) -> (the ensemble, the boolean mask of labelled = train instances)."""
    out = {}
    for name in P["datasets"]:
        for s in seed_list(P):
            if name == "synthetic":
                es = edata.synthetic_ensemble(P["n_instances"], P["n_classifiers"], P["positive_rate"], seed=s)
            else:
                es = edata.digits_ensemble(P["positive_digit"], P["base_fraction"], seed=s)
            out[name, s] = (es, edata.labelled_split(es, P["labelled_fraction"], seed=s))
    return out


def _pr_auc(y, p) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p))


def _roc_auc(y, p) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def data_summary(P: dict, data: dict) -> pd.DataFrame:
    """Per data set (first seed's sizes; base-classifier quality averaged over seeds)."""
    rows = []
    for name in P["datasets"]:
        sets = [data[name, s] for s in seed_list(P)]
        es, tr = sets[0]
        base = [np.mean([_pr_auc(e.y[~m], r[~m]) for r in e.R]) for e, m in sets]
        best = [np.max([_pr_auc(e.y[~m], r[~m]) for r in e.R]) for e, m in sets]
        rows.append({
            "Data": name,
            "Classifiers": es.R.shape[0],
            "Instances": es.R.shape[1],
            "Positive %": 100.0 * es.y.mean(),
            "Labelled": int(tr.sum()),
            "Test": int((~tr).sum()),
            "Easy/med/hard": "/".join(str(int((es.difficulty == g).sum())) for g in range(3)),
            "Base PR-AUC (mean)": float(np.mean(base)),
            "Base PR-AUC (best)": float(np.mean(best)),
        })
    return report.round_floats(pd.DataFrame(rows), 3)


def focal_weight_table(pts=FOCAL_TABLE_PT, gammas=FOCAL_TABLE_GAMMAS) -> pd.DataFrame:
    """The CF-Ensemble study's focal-weight table: relative weight ``(1 - p_t)^gamma`` of an example against
    cross-entropy (weight 1), for a few ``p_t`` (probability of the true class) and gammas."""
    pts = np.asarray(pts, dtype=float)
    cols = {f"gamma={g:g}": cfe.focal_weights(pts, np.ones_like(pts), g) for g in gammas}
    df = pd.DataFrame({"p_t": pts, **cols})
    return report.round_floats(df, 4)


# --------------------------------------------------------------------------- methods


def methods(P: dict) -> list[str]:
    return [*BASELINES, *(f"{t}_{c}" for t in P["trainers"] for c in CONFIGS)]


def config_weights(P: dict, config: str) -> tuple[bool, float]:
    """(use_class_weights, focal_gamma) of a configuration."""
    return {
        "baseline": (False, 0.0),
        "class_weights": (True, 0.0),
        "focal": (False, P["focal_gamma"]),
        "both": (True, P["focal_gamma"]),
    }[config]


def make_trainer(P: dict, trainer: str, config: str, n_classifiers: int, seed: int, **over):
    cw, gamma = config_weights(P, config)
    shared = dict(latent_dim=P["latent_dim"], rho=P["rho"], lambda_reg=P["lambda_reg"],
                  use_class_weights=cw, focal_gamma=gamma, random_seed=seed)
    if trainer == "als":
        kw = dict(aggregator_lr=P["aggregator_lr"], max_iter=P["max_iter"], tol=P["tol"],
                  use_label_aware_confidence=P["use_label_aware_confidence"],
                  label_aware_alpha=P["label_aware_alpha"], aggregator_steps=P["aggregator_steps"])
        return cfe.ALSTrainer(n_classifiers, **{**shared, **kw, **over})
    kw = dict(max_epochs=P["max_epochs"], lr=P["lr"], optimizer=P["optimizer"], patience=P["patience"], min_delta=P["min_delta"])
    return cfe.TorchTrainer(n_classifiers, **{**shared, **kw, **over})


def ensemble_data(P: dict, es: edata.EnsembleSet, train: np.ndarray) -> cfe.EnsembleData:
    """The trainers' input: R, the train labels (test instances marked -1), confidence."""
    labels = np.where(train, es.y, -1)
    return cfe.EnsembleData(es.R, labels, None if P["confidence"] == "certainty" else "uniform")


def stacking_scores(es: edata.EnsembleSet, train: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=1000).fit(es.R[:, train].T, es.y[train])
    return clf.predict_proba(es.R.T)[:, 1]


def run_one(P: dict, method: str, es: edata.EnsembleSet, train: np.ndarray, seed: int) -> np.ndarray:
    """Scores (probabilities) of ``method`` for every instance (train and test)."""
    if method == "averaging":
        return es.R.mean(axis=0)
    if method == "stacking":
        return stacking_scores(es, train)
    trainer, config = method.split("_", 1)
    model = make_trainer(P, trainer, config, es.R.shape[0], seed)
    return model.fit(ensemble_data(P, es, train)).predict()


def run_all(P: dict, data: dict, progress: bool = True) -> dict[tuple[str, int, str], np.ndarray]:
    """(data set, seed, method) -> scores for all instances of that ensemble."""
    jobs = [(name, s, m) for (name, s) in data for m in methods(P)]
    it = runtime.progress(jobs, progress, desc="fits", total=len(jobs))
    out = {}
    for name, s, m in it:
        es, tr = data[name, s]
        out[name, s, m] = run_one(P, m, es, tr, s)
    return out


def _method_parts(m: str) -> tuple[str, str]:
    if m in BASELINES:
        return "-", m
    t, c = m.split("_", 1)
    return ("ALS" if t == "als" else "PyTorch"), CONFIG_LABELS[c]


def test_metrics(y, p, difficulty) -> dict[str, float]:
    """PR-AUC, ROC-AUC, accuracy at p > 0.5 on easy and hard instances, spread and share positive."""
    pred = p > THRESHOLD
    ok = pred == (y == 1)
    return {
        "pr_auc": _pr_auc(y, p),
        "roc_auc": _roc_auc(y, p),
        "easy_acc": float(ok[difficulty == 0].mean()),
        "hard_acc": float(ok[difficulty == 2].mean()),
        "pred_std": float(np.std(p)),
        "pos_pred": float(pred.mean()),
    }


def evaluate(P: dict, data: dict, runs: dict) -> pd.DataFrame:
    """One row per (data set, seed, method) with the test metrics."""
    rows = []
    for (name, s, m), scores in runs.items():
        es, tr = data[name, s]
        te = ~tr
        trainer, config = _method_parts(m)
        rows.append({"dataset": name, "seed": s, "method": m, "trainer": trainer, "configuration": config,
                     "n_train": int(tr.sum()), "n_test": int(te.sum()),
                     **test_metrics(es.y[te], scores[te], es.difficulty[te])})
    return pd.DataFrame(rows)


#: Data sets whose seeds re-split one fixed pool of instances (digits: the same 1,797 images) and
#: so give overlapping, correlated replicates; the synthetic set draws new data for every seed.
RESPLITS_ONE_POOL = {"digits": True, "synthetic": False}
TEST_NAMES = {True: "Nadeau-Bengio corrected t", False: "paired t"}


# --------------------------------------------------------------------------- tables

METRIC_COLUMNS = {"pr_auc": "PR-AUC", "roc_auc": "ROC-AUC", "easy_acc": "Easy acc", "hard_acc": "Hard acc",
                  "pred_std": "Pred std", "pos_pred": "Pos. pred"}


def _pm(mean: float, std: float, decimals: int = 3) -> str:
    if not np.isfinite(std):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def results_table(P: dict, per_seed: pd.DataFrame) -> pd.DataFrame:
    """The study's table for every data set and trainer plus the two baselines: mean ± std over seeds."""
    rows = []
    for name in P["datasets"]:
        for m in methods(P):
            d = per_seed[(per_seed.dataset == name) & (per_seed.method == m)]
            trainer, config = _method_parts(m)
            row = {"Data": name, "Trainer": trainer, "Configuration": config}
            for k, label in METRIC_COLUMNS.items():
                v = d[k].to_numpy(dtype=float)
                row[label] = _pm(v.mean(), v.std(ddof=1) if len(v) > 1 else math.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def comparison_pairs(P: dict) -> list[tuple[str, str]]:
    """(challenger, reference) pairs: each weighting against the baseline configuration, focal on
    top of class weights, and the full method against both ensemble baselines."""
    pairs = []
    for t in P["trainers"]:
        pairs += [(f"{t}_class_weights", f"{t}_baseline"), (f"{t}_focal", f"{t}_baseline"),
                  (f"{t}_both", f"{t}_class_weights"), (f"{t}_both", "averaging"), (f"{t}_both", "stacking")]
    return pairs


def paired_seed_test(deltas: np.ndarray, alpha: float = 0.05) -> dict:
    """Two-sided paired t-test of per-seed differences (mean 0 under the null) with the
    Student-t interval of ``lfakit.stats.aggregate_seeds``. Fewer than 2 seeds: NaN.
    All differences equal: p = 1 if they are 0, else 0."""
    d = np.asarray(deltas, dtype=float)
    agg = aggregate_seeds(pd.DataFrame({"k": 0, "d": d}), "k", "d", ci=1 - alpha).iloc[0]
    n, mean, sd = int(agg["n"]), float(agg["mean"]), float(agg["std"])
    if n < 2:
        p = math.nan
    elif sd == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(2 * student_t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))
    lo, hi = float(agg["ci_low"]), float(agg["ci_high"])
    if n >= 2 and sd == 0:
        lo = hi = mean
    return {"delta": mean, "ci_low": lo, "ci_high": hi, "p_value": p, "n": n}


def _label(m: str) -> str:
    t, c = _method_parts(m)
    return c if t == "-" else f"{t}: {c}"


def comparison_table(P: dict, per_seed: pd.DataFrame, metric: str = "pr_auc") -> pd.DataFrame:
    """Paired comparisons over seeds of ``metric`` (PR-AUC): mean difference, 95% t-interval,
    p-value, its Holm-adjusted value and the winner, marked ``(n.s.)`` unless the adjusted p <
    alpha; the ``Test`` column names the test. Each seed is a new training (and split), so the
    test includes the retraining noise. Where every seed draws new data (synthetic) the seeds are
    independent replicates and the plain paired t-test applies; where the seeds re-split one pool
    (digits) the replicates overlap, and the Nadeau-Bengio corrected resampled t-test
    (:func:`lfakit.stats.corrected_resampled_ttest`, with the labelled and test instance counts)
    replaces it. Holm family: every comparison of the table, over all data sets."""
    rows = []
    for name in P["datasets"]:
        sub = per_seed[per_seed.dataset == name]
        d = sub.pivot(index="seed", columns="method", values=metric)
        resplit = RESPLITS_ONE_POOL.get(name, True)  # unknown sets: the cautious test
        for ch, ref in comparison_pairs(P):
            if resplit:
                r = corrected_resampled_ttest(d[ch] - d[ref], int(sub["n_train"].iloc[0]), int(sub["n_test"].iloc[0]),
                                              ci=1 - P["alpha"])
            else:
                r = paired_seed_test(d[ch] - d[ref], P["alpha"])
            rows.append({"Data": name, "Challenger": _label(ch), "Reference": _label(ref),
                         "Delta": r["delta"], "CI low": r["ci_low"], "CI high": r["ci_high"],
                         "p-value": r["p_value"], "Seeds": r["n"], "Test": TEST_NAMES[resplit]})
    out = pd.DataFrame(rows)
    if not len(out):
        return out
    out.insert(out.columns.get_loc("Seeds"), "p (Holm)", holm(out["p-value"].to_numpy(float)))

    def winner(row) -> str:
        if not np.isfinite(row["Delta"]) or row["Delta"] == 0:
            win = "tie"
        else:
            win = row["Challenger"] if row["Delta"] > 0 else row["Reference"]
        return win if np.isfinite(row["p (Holm)"]) and row["p (Holm)"] < P["alpha"] else win + " (n.s.)"

    out["Winner"] = out.apply(winner, axis=1)
    return report.round_floats(out, 4)


def tables(P: dict, per_seed: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {
        "results": results_table(P, per_seed),
        "comparison": comparison_table(P, per_seed),
        "focal_weights": focal_weight_table(),
        "per_seed": report.round_floats(per_seed, 6),
    }


# --------------------------------------------------------------------------- collapse


def collapse_study(P: dict, data: dict) -> tuple[pd.DataFrame, dict]:
    """The ALS aggregator without and with class weights (gamma 0) on each data set's first seed,
    after ``max_iter * k`` gradient steps for every ``k`` in ``collapse_steps``.

    Returns the table (spread of the test predictions, share predicted positive, PR-AUC, the
    aggregator's mean weight and bias) and the test predictions per (data set, weighting, k)."""
    rows, preds = [], {}
    s = seed_list(P)[0]
    for name in P["datasets"]:
        es, tr = data[name, s]
        te = ~tr
        ed = ensemble_data(P, es, tr)
        for cw in (False, True):
            for k in P["collapse_steps"]:
                model = make_trainer(P, "als", "class_weights" if cw else "baseline", es.R.shape[0], s,
                                     aggregator_steps=int(k), tol=0.0).fit(ed)
                p = model.predict()[te]
                preds[name, cw, int(k)] = p
                rows.append({
                    "Data": name, "Class weights": "yes" if cw else "no", "GD steps": int(k) * model.n_iter_,
                    "Pred std": float(p.std()), "Pred min": float(p.min()), "Pred max": float(p.max()),
                    "Pos. pred %": 100.0 * float((p > THRESHOLD).mean()), "PR-AUC": _pr_auc(es.y[te], p),
                    "Mean w": float(model.w.mean()), "b": float(model.b),
                })
    return report.round_floats(pd.DataFrame(rows), 3), preds


def collapse_verdicts(table: pd.DataFrame) -> list[str]:
    """One line per row of :func:`collapse_study`: is every test prediction on one side of 0.5?"""
    out = []
    for _, r in table.iterrows():
        one_class = r["Pos. pred %"] in (0.0, 100.0)
        state = "COLLAPSED: every test instance gets the same class" if one_class else "both classes predicted"
        out.append(f"{r['Data']:>9}, class weights {r['Class weights']:>3}, {int(r['GD steps']):>5} steps: "
                   f"predictions in [{r['Pred min']:.3f}, {r['Pred max']:.3f}], std {r['Pred std']:.3f} -> {state}")
    return out


# --------------------------------------------------------------------------- figures


def plot_prediction_spread(P: dict, data: dict, runs: dict):
    """Histograms of the test predictions of the ALS and PyTorch aggregators, without and with
    class weights (first seed), one panel per data set and trainer (two per row)."""
    import matplotlib.pyplot as plt

    s = seed_list(P)[0]
    panels = [(d, t) for d in P["datasets"] for t in P["trainers"]]
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    bins = np.linspace(0, 1, 41)
    with report.style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(min(report.FIG_WIDTH, 4.6 * ncols + 0.4), 2.9 * nrows + 0.3),
                                 squeeze=False, layout="constrained")
        for ax, (name, t) in zip(axes.flat, panels):
            es, tr = data[name, s]
            for cfg, color in (("baseline", "tab:red"), ("class_weights", "tab:blue")):
                p = runs[name, s, f"{t}_{cfg}"][~tr]
                ax.hist(p, bins=bins, alpha=0.6, color=color, label=f"{CONFIG_LABELS[cfg]} (std {p.std():.3f})")
            ax.axvline(THRESHOLD, color="grey", linestyle=":", linewidth=1)
            ax.set_title(f"{name}, {'ALS' if t == 'als' else 'PyTorch'}")
            ax.set_xlabel("predicted probability (test)")
            ax.set_ylabel("instances")
            ax.legend()
        for ax in axes.flat[len(panels):]:
            fig.delaxes(ax)
    return report._ticks(fig)


def _method_group(m: str) -> str:
    return "ensemble baseline" if m in BASELINES else ("ALS" if m.startswith("als") else "PyTorch")


def plot_metric_bars(P: dict, per_seed: pd.DataFrame, metric: str = "pr_auc"):
    """``metric`` of every method, one dot per seed and the mean ± sd over seeds (seaborn), one
    panel per data set: the seeds' spread that the results table's mean ± std summarises."""
    d = per_seed.assign(group=[_method_group(m) for m in per_seed["method"]])
    d = d[d["method"].isin(methods(P))]
    return report.plot_per_seed(d, metric, "method", panel="dataset", group="group",
                                xlabel=f"test {METRIC_COLUMNS[metric]}",
                                title=f"Test {METRIC_COLUMNS[metric]} per seed (dots) and mean ± sd (diamonds), "
                                      f"{P['seeds']} seeds")


def plot_focal_weights():
    import matplotlib.pyplot as plt

    pt = np.linspace(0.0, 1.0, 201)
    with report.style():
        fig, ax = plt.subplots(figsize=(4.8, 3.4), layout="constrained")
        for g in FOCAL_TABLE_GAMMAS:
            ax.plot(pt, cfe.focal_weights(pt, np.ones_like(pt), g), label=f"γ={g:g}")
        ax.set_xlabel("p_t (probability of the true class)")
        ax.set_ylabel("relative weight (1 - p_t)^γ")
        ax.legend()
    return report._ticks(fig)


def figures(P: dict, data: dict, runs: dict, per_seed: pd.DataFrame, run_dir: Path) -> dict:
    figs = {
        "prediction_spread": plot_prediction_spread(P, data, runs),
        "pr_auc_by_method": plot_metric_bars(P, per_seed, "pr_auc"),
        "focal_weights": plot_focal_weights(),
    }
    for name, fig in figs.items():
        report.save_figure(fig, run_dir / "figures" / f"{name}.png")
    return figs


# --------------------------------------------------------------------------- save


HEADLINE_ABOUT = ("per data set and method, the mean and std (ddof=1) over seeds of each test metric: PR-AUC "
                  "(average precision) and ROC-AUC of the probabilities, accuracy of p > 0.5 on the easy and the "
                  "hard test instances, the std of the test probabilities and the share predicted positive; "
                  "rounded to 4 decimals")


def headline_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every metric, per (data set, method): the numbers of the results table."""
    g = per_seed.groupby(["dataset", "method"], sort=False)[list(METRIC_COLUMNS)]
    out = g.mean().add_suffix(" mean").join(g.std(ddof=1).add_suffix(" std")).reset_index()
    return report.round_floats(out, 4)


def save(P: dict, run_dir: Path, data: dict, runs: dict, per_seed: pd.DataFrame,
         tables: dict[str, pd.DataFrame], collapse: pd.DataFrame) -> list[str]:
    """Write the run record (:mod:`lfakit.record`): every method's probabilities for every
    instance (split ``train`` = labelled, ``test``; group = data set; per-sample field
    ``difficulty``: 0 easy, 1 medium, 2 hard), metrics.json with the mean/std over seeds as
    headline, tables/*.csv and the manifest; return the files of the run folder."""
    pw = record.PredictionWriter()
    for (name, s, m), sc in runs.items():
        es, tr = data[name, s]
        for split, mask in (("train", tr), ("test", ~tr)):
            pw.add(m, split, s, es.instance_ids[mask], es.y[mask], sc[mask], group=name, difficulty=es.difficulty[mask])
    methods_ = {}
    for m in methods(P):
        methods_[m] = {}
        for name in P["datasets"]:
            d = per_seed[(per_seed.dataset == name) & (per_seed.method == m)]
            methods_[m][name] = {k: d[k].astype(float).tolist() for k in METRIC_COLUMNS}
    first = seed_list(P)[0]
    extra = {
        "seeds": seed_list(P),
        "threshold": THRESHOLD,
        "metric_notes": {
            "pr_auc": "average precision (sklearn.metrics.average_precision_score) on the test instances",
            "roc_auc": "sklearn.metrics.roc_auc_score on the test instances",
            "easy_acc/hard_acc": f"accuracy of p > {THRESHOLD} on the easy / hard test instances",
            "pred_std": "standard deviation of the test predictions", "pos_pred": f"share of test predictions > {THRESHOLD}",
            "comparison": "paired over seeds: mean difference, Student-t 95% interval, two-sided paired t-test",
        },
        "difficulty_rules": {name: data[name, first][0].difficulty_rule for name in P["datasets"]},
        "classifiers": {name: data[name, first][0].classifier_names for name in P["datasets"]},
        "comparison": tables["comparison"].to_dict(orient="records"),
        "collapse": collapse.to_dict(orient="records"),
    }
    return record.save_run(run_dir, EXPERIMENT, P, methods=methods_,
                           headline=("results_numbers", headline_table(per_seed), HEADLINE_ABOUT),
                           tables={**tables, "collapse": collapse}, predictions=pw, score_kind="probability",
                           extra=extra, table_index=False)


def silence_warnings() -> None:
    """scikit-learn's convergence chatter on the tiny base classifiers is not news here."""
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
