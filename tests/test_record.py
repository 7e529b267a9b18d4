"""The run record: one schema for every experiment, read back by ``load_run``; each experiment's
headline table recomputed from the record alone (predictions or stored raw tables) with the
public metric functions, and found in metrics.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from lfakit import record, runner
from lfakit.errors import DataError
from lfakit.metrics.classification import multilabel_report
from lfakit.metrics.lfa import METRICS, per_class_metrics

TOL = 5e-5 + 1e-12  # the headline is rounded to 4 decimals


# --------------------------------------------------------------------------- unit


def _writer():
    pw = record.PredictionWriter()
    pw.add("bce", "test", 1, ["a", "b"], [[0, 1], [1, 0]], [[0.1, 2.0], [3.0, -1.0]], [0.5, 0.25], group="g1")
    pw.add("bce", "test", 2, ["a", "b"], [[0, 1], [1, 0]], [[0.2, 1.0], [2.0, -2.0]], group="g1")
    pw.add("zlpr", "val", 1, [7], [[1, 1]], [[1e3, -1e3]], [0.0], group="g2")
    return pw


def test_predictions_round_trip_and_select(tmp_path):
    _writer().write(tmp_path)
    p = record.read_predictions(tmp_path / record.PREDICTIONS)
    assert len(p) == 5 and p.methods() == ["bce", "zlpr"] and p.seeds() == [1, 2] and p.groups() == ["g1", "g2"]
    s = p.select(method="bce", seed=2)
    assert s.sample_id.tolist() == ["a", "b"] and s.scores.tolist() == [[0.2, 1.0], [2.0, -2.0]]
    assert np.isnan(s.sample_loss).all()  # no per-sample loss given: NaN, not 0
    assert p.select(split="val").scores.dtype == np.float64 and p.select(split="val").scores[0, 0] == 1e3
    assert p.select(method="nope").method.size == 0


def test_writer_rejects_mismatched_blocks():
    pw = record.PredictionWriter()
    with pytest.raises(ValueError, match="2 scores but 3 ids"):
        pw.add("bce", "test", 0, ["a", "b", "c"], [[0], [1]], [[0.1], [0.2]])
    pw.add("bce", "test", 0, ["a"], [[0]], [[0.1]], difficulty=[0])
    with pytest.raises(ValueError, match="per-sample fields"):
        pw.add("bce", "val", 0, ["a"], [[0]], [[0.1]])


def test_params_hash_ignores_run_dir_and_resume_only():
    a = {"lr": 0.1, "losses": ["bce"], "run_dir": "/x", "resume": False}
    assert record.params_hash(a) == record.params_hash({**a, "run_dir": "/y", "resume": True})
    assert record.params_hash(a) != record.params_hash({**a, "lr": 0.2})


def test_save_and_load_run(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "f.png").write_bytes(b"png")
    head = pd.DataFrame({"bce": [0.5, np.nan]}, index=pd.Index(["Avg AUROC", "Avg F1"], name="Metric"))
    files = record.save_run(tmp_path, "demo", {"lr": 0.1, "run_dir": str(tmp_path)}, methods={"bce": {"auroc": np.float64(0.5)}},
                            headline=("overall", head, "about"), tables={"overall": head}, predictions=_writer(),
                            score_kind="logit", extra={"x": np.inf})
    assert files == sorted(["figures/f.png", "manifest.json", "metrics.json", "predictions.npz", "tables/overall.csv"])
    m = json.loads((tmp_path / "metrics.json").read_text())  # strict JSON: inf and NaN stored as null
    assert m["schema"] == record.SCHEMA and m["extra"] == {"x": None}
    r = record.load_run(tmp_path)
    assert r.experiment == "demo" and r.score_kind == "logit" and r.methods["bce"]["auroc"] == 0.5
    assert r.headline.index.name == "Metric" and r.headline.loc["Avg AUROC", "bce"] == 0.5
    assert np.isnan(r.headline.loc["Avg F1", "bce"])
    assert len(r.predictions) == 5 and set(r.tables) == {"overall"}
    assert r.manifest["predictions.npz"]["bytes"] == (tmp_path / "predictions.npz").stat().st_size


def test_load_run_names_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="no metrics.json.*--resume"):
        record.load_run(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"schema": "other/9"}))
    with pytest.raises(DataError, match="schema 'other/9'"):
        record.load_run(tmp_path)


def _saved(tmp_path):
    head = pd.DataFrame({"bce": [0.5]}, index=pd.Index(["Avg AUROC"], name="Metric"))
    (tmp_path / "checkpoints" / "bce").mkdir(parents=True)
    (tmp_path / "checkpoints" / "bce" / "last.pt").write_bytes(b"weights" * 100)
    record.save_run(tmp_path, "demo", {"lr": 0.1}, methods={"bce": {}}, headline=("overall", head, "about"),
                    tables={"overall": head}, predictions=_writer(), score_kind="logit")
    return tmp_path


def test_verify_run_checks_every_promise_of_the_manifest(tmp_path):
    run = _saved(tmp_path)
    assert record.verify_run(run) == []
    # a checkpoint changed in place (same size) passes the size check; hash_all reads it too
    ck = run / "checkpoints" / "bce" / "last.pt"
    ck.write_bytes(b"WEIGHTS" * 100)
    assert record.verify_run(run) == []
    assert [d.file for d in record.verify_run(run, hash_all=True)] == ["checkpoints/bce/last.pt"]
    ck.write_bytes(b"w")  # a size change is caught without hashing
    assert "1 bytes, the manifest says 700 (truncated)" in str(record.verify_run(run)[0])
    ck.write_bytes(b"weights" * 100)
    # a listed table replaced by a symbolic link to a file outside the folder
    outside = tmp_path.parent / f"{tmp_path.name}-secret.csv"
    outside.write_text((run / "tables" / "overall.csv").read_text())
    (run / "tables" / "overall.csv").unlink()
    (run / "tables" / "overall.csv").symlink_to(outside)
    assert [(d.file, "symbolic link" in d.reason) for d in record.verify_run(run)] == [("tables/overall.csv", True)]
    with pytest.raises(record.DamagedRun, match="tables/overall.csv: a symbolic link"):
        record.load_run(run)


def test_a_manifest_cannot_point_out_of_the_folder_or_drop_the_metrics(tmp_path):
    run = _saved(tmp_path)
    m = json.loads((run / "manifest.json").read_text())
    m["files"]["../../etc/passwd"] = {"bytes": 1, "sha256": "0" * 64}
    m["files"]["/etc/passwd"] = {"bytes": 1, "sha256": "0" * 64}
    m["files"]["tables/x.csv"] = {"bytes": "1", "sha256": "nothex"}
    del m["files"]["metrics.json"]
    (run / "manifest.json").write_text(json.dumps(m))
    got = {str(d) for d in record.verify_run(run)}
    assert "manifest.json: lists '../../etc/passwd', which is not a path inside the run folder" in got
    assert "manifest.json: lists '/etc/passwd', which is not a path inside the run folder" in got
    assert "manifest.json: the entry of 'tables/x.csv' has no valid size and SHA-256" in got
    assert any(s.startswith("metrics.json: not listed") for s in got) and len(got) == 4
    (run / "manifest.json").write_text("{")
    assert [d.file for d in record.verify_run(run)] == ["manifest.json"]
    (run / "manifest.json").unlink()
    with pytest.raises(record.DamagedRun, match="manifest.json: missing"):
        record.load_run(run)
    assert record.load_run(run, verify=False).experiment == "demo"  # the unchecked read of an unfinished record


def test_load_run_reads_only_the_tables_the_manifest_lists(tmp_path):
    run = _saved(tmp_path)
    (run / "tables" / "added_later.csv").write_text("a\n1\n")
    assert set(record.load_run(run).tables) == {"overall"}


def test_a_metrics_file_that_is_not_a_regular_file_is_not_read(tmp_path):
    import os

    run = _saved(tmp_path)
    (run / "metrics.json").unlink()
    os.mkfifo(run / "metrics.json")  # reading it would block forever
    with pytest.raises(record.DamagedRun, match="metrics.json: a symbolic link or not a regular file"):
        record.load_run(run)


# --------------------------------------------------------------------------- every experiment

QUICK = {
    "chestxray_zlpr": {"epochs": 2, "losses": ["focal", "zlpr"], "synthetic_patients": 120, "seeds": [0, 1]},
    "cifar_fece": {"epochs": 2, "losses": ["bce", "focal"], "imbalance_ratios": [1, 10], "digits_test_per_class": 20,
                   "seeds": [3, 4]},
    "cf_ensemble": {"seeds": 2, "max_iter": 10, "max_epochs": 40, "collapse_steps": [1]},
    "loss_atlas": {"grid_size": 21},
    "iqa_losses": {"epochs": 1, "losses": ["l1", "fidelity"], "n_boot": 200},
    "membership_inference": {"epochs": 2, "losses": ["ce", "flooding"], "pool_size": 300, "n_boot": 200},
}


@pytest.fixture(scope="module", params=sorted(QUICK))
def run(request, tmp_path_factory):
    exp = request.param
    out = runner.run(exp, "smoke", QUICK[exp], log_output=False)
    return exp, record.load_run(out.run_dir)


def _close(got: float, want) -> bool:
    if want is None or (isinstance(want, float) and np.isnan(want)):
        return bool(np.isnan(got))
    return abs(got - want) <= TOL


@pytest.mark.slow
def test_every_run_loads_into_the_same_structures(run):
    exp, r = run
    assert isinstance(r, record.RunRecord) and r.experiment == exp
    assert r.params_hash == record.params_hash(r.params)
    assert r.params["seed"] == 42 and r.headline_about and not r.headline.empty
    assert "manifest.json" not in r.manifest and "metrics.json" in r.manifest
    if exp == "loss_atlas":
        assert r.predictions is None  # nothing is trained
    else:
        assert len(r.predictions) > 0 and set(r.predictions.methods()) == set(r.methods)


@pytest.mark.slow
def test_headline_recomputed_from_the_record_alone(run):
    exp, r = run
    {"chestxray_zlpr": _chestxray, "cifar_fece": _cifar, "cf_ensemble": _cf_ensemble, "loss_atlas": _atlas,
     "iqa_losses": _iqa, "membership_inference": _membership}[exp](r)


def _chestxray(r):
    p = r.predictions
    assert r.headline_name == "overall" and p.seeds() == r.extra["seeds"]
    for loss in r.params["losses"]:
        col = r.headline[loss]
        reps, losses_, f1_zero = [], [], []
        for seed in p.seeds():  # every per-class metric is the mean over the training seeds
            val, test = p.select(method=loss, split="val", seed=seed), p.select(method=loss, split="test", seed=seed)
            reps.append(multilabel_report(val.targets, expit(val.scores), test.targets, expit(test.scores),
                                          r.extra["classes"]))
            losses_.append(np.mean(test.sample_loss))
            defined = (test.targets.sum(0) > 0) & (test.targets.sum(0) < len(test))
            f1_zero.append([f1_score(test.targets[:, c], test.scores[:, c] > 0) for c in np.flatnonzero(defined)])
        rep = sum(reps[1:], reps[0].copy()) / len(reps)
        assert _close(float(np.mean(losses_)), col["Loss (own scale)"]), loss
        assert _close(float(np.nanmean(rep["AUROC"])), col["Avg AUROC"]), loss
        assert _close(float(np.nanmean(rep["F1"])), col["Avg F1"]), loss
        assert _close(float(np.mean(np.mean(f1_zero, axis=0))), col["Avg F1 (z>0)"]), loss
    comp = r.tables["comparison"]  # two seeds: the seed-level t of the per-seed differences
    assert (comp["Test"] == "seed-level t").all() and (comp["Seeds"] == 2).all()
    assert {"p-value", "p (Holm)", "Winner"} <= set(comp.columns)


def _cifar(r):
    p = r.predictions
    head = r.headline.set_index(["rho", "loss"])
    k = len(r.extra["classes"])
    assert p.seeds() == [3, 4]
    for rho in r.params["imbalance_ratios"]:
        for loss in r.params["losses"]:
            frames = []
            for seed in p.seeds():  # per-class metrics: the mean over the training seeds
                sel = {s: p.select(method=loss, split=s, group=f"rho={rho}/fold=1", seed=seed) for s in ("val", "test")}
                y = {s: sel[s].targets[:, 0].astype(int) for s in sel}
                frames.append(per_class_metrics(np.eye(k)[y["val"]], expit(sel["val"].scores), np.eye(k)[y["test"]],
                                                expit(sel["test"].scores), r.extra["classes"]))
            df = sum(frames[1:], frames[0].copy()) / len(frames)
            row = head.loc[(str(rho), loss)]
            for m in METRICS:
                v = df[m].to_numpy(float)
                assert _close(float(np.mean(v)), row[f"{m} mean"]), (rho, loss, m)
                assert _close(float(np.std(v)), row[f"{m} std"]), (rho, loss, m)
    comp = r.tables["comparison_rho1"]
    assert (comp["Test"] == "seed-level t").all() and (comp["Seeds"] == 2).all()


def _cf_ensemble(r):
    p = r.predictions
    head = r.headline.set_index(["dataset", "method"])
    thr = r.extra["threshold"]
    for (ds, m), row in head.iterrows():
        per_seed = []
        for s in p.seeds():
            t = p.select(method=m, split="test", seed=s, group=ds)
            y, sc, d = t.targets[:, 0], t.scores[:, 0], t.fields["difficulty"]
            ok = (sc > thr) == (y == 1)
            per_seed.append([average_precision_score(y, sc), roc_auc_score(y, sc), ok[d == 0].mean(), ok[d == 2].mean(),
                             np.std(sc), (sc > thr).mean()])
        a = np.array(per_seed)
        for j, name in enumerate(["pr_auc", "roc_auc", "easy_acc", "hard_acc", "pred_std", "pos_pred"]):
            assert _close(float(a[:, j].mean()), row[f"{name} mean"]), (ds, m, name)
            assert _close(float(a[:, j].std(ddof=1)), row[f"{name} std"]), (ds, m, name)


def _atlas(r):
    w, ref = r.tables["weights_at_table_pt"], r.tables["reference_at_table_pt"]
    head = r.headline
    assert r.headline_name == "relative_to_reference" and len(head) > 10
    for _, row in head.iterrows():
        for col in [c for c in head.columns if c not in ("view", "loss", "reference")]:
            pt = float(col)
            num = w[(w.view == row["view"]) & (w.loss == row["loss"]) & np.isclose(w.p_t, pt)]["weight"].iloc[0]
            den = ref[(ref.view == row["view"]) & np.isclose(ref.p_t, pt)]["weight"].iloc[0]
            want = row[col]
            got = num / den if den != 0 else np.nan
            assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, rel=1e-9, abs=1e-12), (row["loss"], col)


def _iqa(r):
    from scipy import stats as sps

    head = r.headline.set_index("Loss")
    assert r.headline_name == "metrics_test" and set(head.index) == {"l1", "fidelity"}
    for name in head.index:
        p = r.predictions.select(method=name, split="test")
        s, mos = p.scores[:, 0], p.targets[:, 0]
        assert len(p) == r.extra["test_images"] and np.isfinite(p.fields["sd"]).all()
        assert _close(sps.spearmanr(s, mos).statistic, head.loc[name, "SRCC"])
        assert _close(sps.kendalltau(s, mos).statistic, head.loc[name, "KRCC"])
        assert _close(sps.pearsonr(s, mos).statistic, head.loc[name, "PLCC (raw)"])


def _membership(r):
    head = r.headline.set_index("Loss")
    assert r.headline_name == "study" and set(head.index) == {"ce", "flooding"}
    for name in head.index:
        train, test = [], []  # the headline's accuracies are means over the attacked targets
        for group in r.extra["targets"]:
            t = r.predictions.select(method=name, split="pool", group=group)
            members = t.fields["in_train"].astype(bool)
            right = t.scores.argmax(1) == t.targets[:, 0].astype(int)
            if group == "target":
                assert members.sum() == (~members).sum() == 150
            train.append(right[members].mean())
            test.append(right[~members].mean())
        assert len(train) == r.extra["n_targets"] >= 2
        assert abs(100 * np.mean(train) - head.loc[name, "Target Train Acc (%)"]) <= 5e-4 + 1e-9
        assert abs(100 * np.mean(test) - head.loc[name, "Target Test Acc (%)"]) <= 5e-4 + 1e-9
        study = r.extra["study_attack"]
        auc = r.methods[name]["attacks_mean_over_targets"][study]["auc"]
        assert abs(auc - head.loc[name, "Attack AUC"]) <= 5e-4 + 1e-9
        assert len(r.predictions.select(method=name, split="pool").groups()) == 1 + r.extra["n_ref"]
