"""LFA per-class metrics against scikit-learn, Table 2 across classes, thresholds from validation only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from lfakit.metrics.classification import best_f1_thresholds
from lfakit.metrics.lfa import (
    METRICS,
    hard_class_table,
    one_hot,
    per_class_metrics,
    table2,
    table2_numbers,
    true_class_probability,
)


def _predictions(seed, n, k=5, sizes=None, noise=1.0):
    """Integer labels and (N, K) probabilities that carry some signal (and ties)."""
    rng = np.random.default_rng(seed)
    p_cls = None if sizes is None else np.asarray(sizes, float) / np.sum(sizes)
    y = rng.choice(k, size=n, p=p_cls)
    logits = rng.normal(0, noise, size=(n, k)) + 2.0 * np.eye(k)[y]
    p = np.round(1 / (1 + np.exp(-logits)), 2)  # rounding makes ties, as real scores have
    return y, p


def test_per_class_metrics_equal_scikit_learn():
    y_val, p_val = _predictions(0, 300, sizes=[50, 20, 10, 5, 2])
    y_test, p_test = _predictions(1, 400, sizes=[1, 1, 1, 1, 1])
    df = per_class_metrics(y_val, p_val, y_test, p_test, list("abcde"))
    assert list(df.columns[: len(METRICS)]) == list(METRICS) and list(df.index) == list("abcde")
    for c, name in enumerate("abcde"):
        t = df.loc[name, "threshold"]
        yt = (y_test == c).astype(int)
        pred = (p_test[:, c] >= t).astype(int)
        row = df.loc[name]
        assert row["AUC"] == pytest.approx(skm.roc_auc_score(yt, p_test[:, c]))
        assert row["acc"] == pytest.approx(skm.accuracy_score(yt, pred))
        assert row["Precision"] == pytest.approx(skm.precision_score(yt, pred, zero_division=0))
        assert row["Recall"] == pytest.approx(skm.recall_score(yt, pred, zero_division=0))
        assert row["F0.5"] == pytest.approx(skm.fbeta_score(yt, pred, beta=0.5, zero_division=0))
        assert row["F0"] == pytest.approx(skm.fbeta_score(yt, pred, beta=0, zero_division=0))
        assert row["F0"] == pytest.approx(row["Precision"])  # F0 is the precision
        assert row["F1"] == pytest.approx(skm.f1_score(yt, pred, zero_division=0))
        tn, fp, fn, tp = skm.confusion_matrix(yt, pred, labels=[0, 1]).ravel()
        assert (row["TP"], row["FP"], row["FN"], row["TN"]) == (tp, fp, fn, tn)
        assert row["miss"] == pytest.approx(fn / (tp + fn))
        assert row["overflow"] == pytest.approx(fp / (tp + fp) if tp + fp else 0.0)
        assert row["n_test"] == yt.sum()


def test_integer_labels_and_one_hot_give_the_same_table():
    y_val, p_val = _predictions(2, 200)
    y_test, p_test = _predictions(3, 200)
    a = per_class_metrics(y_val, p_val, y_test, p_test)
    b = per_class_metrics(one_hot(y_val, 5), p_val, one_hot(y_test, 5), p_test)
    pd.testing.assert_frame_equal(a, b)


def test_class_never_predicted_has_zero_precision_and_overflow_like_sklearn():
    y_val = np.array([0, 1, 0, 1])
    p_val = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2], [0.2, 0.8]])
    y_test = np.array([0, 1, 1, 0])
    p_test = np.array([[0.9, 0.1], [0.1, 0.5], [0.2, 0.6], [0.7, 0.3]])  # class 1 never reaches 0.8
    df = per_class_metrics(y_val, p_val, y_test, p_test)
    assert df.loc["1", "threshold"] == 0.8
    assert df.loc["1", "Precision"] == 0.0 == skm.precision_score([0, 1, 1, 0], [0, 0, 0, 0], zero_division=0)
    assert df.loc["1", "overflow"] == 0.0 and df.loc["1", "miss"] == 1.0 and df.loc["1", "Recall"] == 0.0


def test_thresholds_come_from_validation_only():
    y_val, p_val = _predictions(4, 300, noise=1.5)
    y_test, p_test = _predictions(5, 300, noise=1.5)
    base = per_class_metrics(y_val, p_val, y_test, p_test)
    np.testing.assert_array_equal(base["threshold"], best_f1_thresholds(one_hot(y_val, 5), p_val)[0])
    # anything done to the test predictions leaves the thresholds unchanged ...
    rng = np.random.default_rng(0)
    for p_other in (rng.random(p_test.shape), 1 - p_test, np.roll(p_test, 7, axis=0)):
        other = per_class_metrics(y_val, p_val, y_test, p_other)
        np.testing.assert_array_equal(other["threshold"], base["threshold"])
        assert not np.allclose(other["Recall"], base["Recall"])  # ... while the test metrics move
    # ... and changing the validation predictions does move them
    moved = per_class_metrics(y_val, np.sqrt(p_val) * rng.random(p_val.shape), y_test, p_test)
    assert not np.array_equal(moved["threshold"], base["threshold"])


def test_constructed_case_validation_and_test_optimal_thresholds_differ():
    # validation: positives score 0.6-0.7, negatives <= 0.5; test: positives are shifted down
    # to 0.35-0.45 (distribution shift), so the test-optimal threshold would be 0.35.
    y_val = np.array([1, 1, 1, 0, 0, 0, 0])
    s_val = np.array([0.7, 0.65, 0.6, 0.5, 0.3, 0.2, 0.1])
    y_test = np.array([1, 1, 1, 0, 0, 0, 0])
    s_test = np.array([0.45, 0.4, 0.35, 0.3, 0.2, 0.1, 0.05])
    p_val = np.stack([s_val, 1 - s_val], 1)
    p_test = np.stack([s_test, 1 - s_test], 1)
    lab_val, lab_test = 1 - y_val, 1 - y_test  # class 0 is "positive" here
    df = per_class_metrics(lab_val, p_val, lab_test, p_test)
    test_optimal = best_f1_thresholds(one_hot(lab_test, 2), p_test)[0]
    assert test_optimal[0] == pytest.approx(0.35)
    assert df.loc["0", "threshold"] == pytest.approx(0.6) != test_optimal[0]
    assert df.loc["0", "Recall"] == 0.0  # the validation threshold misses every shifted positive
    assert df.loc["0", "AUC"] == 1.0  # while the ranking stays perfect


def test_table2_is_unweighted_mean_and_std_across_classes():
    # a huge class with high recall and small classes with low recall
    y_val, p_val = _predictions(6, 2000, sizes=[100, 5, 5, 5, 5], noise=1.8)
    y_test, p_test = _predictions(7, 3000, sizes=[100, 5, 5, 5, 5], noise=1.8)
    per = {"a": per_class_metrics(y_val, p_val, y_test, p_test), "b": per_class_metrics(y_val, p_val * 0.5, y_test, p_test)}
    num = table2_numbers(per)
    t = table2(per, decimals=3)
    assert list(t.columns) == list(METRICS) and list(t.index) == ["a", "b"]
    for loss, df in per.items():
        for m in METRICS:
            mean, std = np.mean(df[m].to_numpy(float)), np.std(df[m].to_numpy(float))
            assert num.loc[loss, f"{m} mean"] == pytest.approx(mean)
            assert num.loc[loss, f"{m} std"] == pytest.approx(std)
            assert t.loc[loss, m] == f"{mean:.3f}±{std:.3f}"
    # the frequency-weighted mean (the authors' average="weighted") is a different number
    weighted = np.average(per["a"]["Recall"], weights=per["a"]["n_test"])
    assert abs(num.loc["a", "Recall mean"] - weighted) > 0.01


def test_hard_class_table_flags_lowest_recall_and_auc():
    idx = pd.Index(["c0", "c1", "c2", "c3"], name="Class")
    a = pd.DataFrame({"Recall": [0.9, 0.2, 0.8, 0.5], "AUC": [0.99, 0.7, 0.6, 0.95]}, index=idx)
    b = pd.DataFrame({"Recall": [0.95, 0.3, 0.7, 0.4], "AUC": [0.98, 0.8, 0.65, 0.9]}, index=idx)
    t = hard_class_table({"bce": a, "f_ece": b}, n_hard=2, class_sizes=[500, 50, 100, 5])
    assert list(t.columns) == ["n_train", "Recall bce", "Recall f_ece", "AUC bce", "AUC f_ece", "hard"]
    assert t["hard"].tolist() == ["", "recall+AUC", "AUC", "recall"]
    assert t["n_train"].tolist() == [500, 50, 100, 5]
    assert hard_class_table({"bce": a}, n_hard=0)["hard"].tolist() == [""] * 4


def test_true_class_probability():
    probs = np.array([[0.9, 0.2, 0.1], [0.3, 0.4, 0.8]])
    np.testing.assert_array_equal(true_class_probability([0, 2], probs), [0.9, 0.8])
    with pytest.raises(ValueError):
        true_class_probability([0], probs)


def test_hard_classes_are_chosen_on_validation_only():
    """Changing the test metrics (what the table reports) does not change which classes are hard."""
    import numpy as np
    import pandas as pd

    from lfakit.metrics.lfa import hard_class_table

    idx = pd.Index(list("abcdef"), name="Class")
    rng = np.random.default_rng(0)
    val = {loss: pd.DataFrame({"Recall": rng.uniform(size=6), "AUC": rng.uniform(size=6)}, index=idx) for loss in ("bce", "focal")}
    test1 = {loss: pd.DataFrame({"Recall": rng.uniform(size=6), "AUC": rng.uniform(size=6)}, index=idx) for loss in val}
    test2 = {loss: df[::-1].set_axis(idx) for loss, df in test1.items()}  # other test labels, other test metrics
    a = hard_class_table(test1, 2, select_by=val)
    b = hard_class_table(test2, 2, select_by=val)
    assert list(a["hard"]) == list(b["hard"])
    mean_val_recall = (val["bce"]["Recall"] + val["focal"]["Recall"]) / 2
    assert {c for c, h in a["hard"].items() if "recall" in h} == set(mean_val_recall.nsmallest(2).index)
    assert not a["Recall bce"].equals(b["Recall bce"])  # the table still reports the test metrics
    # without select_by the test metrics choose (the old, double-dipping behaviour) and differ
    assert list(hard_class_table(test1, 2)["hard"]) != list(hard_class_table(test2, 2)["hard"])
