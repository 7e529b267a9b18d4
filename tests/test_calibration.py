"""Tests for lfakit.metrics.calibration (spec: docs/losses.md section D)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lfakit.metrics import calibration as C  # noqa: E402

# Hand example with 5 bins [0,.2], (.2,.4], (.4,.6], (.6,.8], (.8,1]:
#   bin 0: conf .1, .2 (edge -> lower bin), correct 0, 0 -> |0 - .15| = .15, n = 2
#   bin 1: conf .35, correct 1                          -> .65, n = 1
#   bin 2: conf .5, correct 1                           -> .5, n = 1
#   bin 4: conf .9, .95, .85, 1.0, correct 1,1,0,1      -> |.75 - .925| = .175, n = 4
#   ECE = (2*.15 + .65 + .5 + 4*.175) / 8 = 2.15 / 8
CONF = [0.1, 0.2, 0.35, 0.9, 0.95, 0.85, 0.5, 1.0]
CORR = [0, 0, 1, 1, 1, 0, 1, 1]


def test_ece_hand_computed_five_bins():
    assert math.isclose(C.expected_calibration_error(CONF, CORR, n_bins=5), 2.15 / 8,
                        rel_tol=1e-12)


def test_ece_hand_computed_default_fifteen_bins():
    # 0.05 -> bin 0, 0.5 -> bin 7 ((7/15, 8/15]), 0.97 -> bin 14
    got = C.expected_calibration_error([0.05, 0.5, 0.97], [True, False, True])
    assert math.isclose(got, (0.95 + 0.5 + 0.03) / 3, rel_tol=1e-12)
    df = C.reliability_diagram_data([0.05, 0.5, 0.97], [1, 0, 1])
    assert len(df) == 15 and df["count"].tolist() == [1] + [0] * 6 + [1] + [0] * 6 + [1]


def test_reliability_table_hand_values():
    df = C.reliability_diagram_data(CONF, CORR, n_bins=5)
    assert list(df.columns) == ["bin_lower", "bin_upper", "confidence", "accuracy", "count"]
    np.testing.assert_allclose(df["bin_lower"], [0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(df["bin_upper"], [0.2, 0.4, 0.6, 0.8, 1.0])
    assert df["count"].tolist() == [2, 1, 1, 0, 4]
    np.testing.assert_allclose(df["confidence"], [0.15, 0.35, 0.5, np.nan, 0.925])
    np.testing.assert_allclose(df["accuracy"], [0.0, 1.0, 1.0, np.nan, 0.75])


def test_bin_edges_right_closed_and_zero_counted():
    df = C.reliability_diagram_data([0.0, 0.2, 0.2000001, 1.0], [0, 1, 1, 1], n_bins=5)
    assert df["count"].tolist() == [2, 1, 0, 0, 1]


def test_perfectly_calibrated_synthetic_has_small_ece():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 200_000)
    correct = rng.uniform(0, 1, conf.size) < conf
    assert C.expected_calibration_error(conf, correct) < 0.01
    # an overconfident model (P(correct) = conf^2) is far off: E[c - c^2] = 1/6
    over = rng.uniform(0, 1, conf.size) < conf**2
    assert C.expected_calibration_error(conf, over) == pytest.approx(1 / 6, abs=0.01)


def test_multiclass_uses_max_probability():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25], [0.05, 0.9, 0.05]])
    labels = np.array([0, 1, 1, 2])
    conf, correct = C.top_label_confidence(probs, labels)
    np.testing.assert_allclose(conf, [0.7, 0.6, 0.5, 0.9])
    assert correct.tolist() == [True, False, True, False]
    want = C.expected_calibration_error([0.7, 0.6, 0.5, 0.9], [1, 0, 1, 0])
    assert C.multiclass_ece(probs, labels) == want
    # 0.5 -> bin 7, 0.6 -> bin 8, 0.7 -> bin 10, 0.9 -> bin 13: one sample per bin
    assert want == pytest.approx((0.3 + 0.6 + 0.5 + 0.9) / 4, rel=1e-12)
    df = C.multiclass_reliability_data(probs, labels)
    assert df["count"].sum() == 4


def test_multiclass_input_errors():
    probs = np.array([[0.7, 0.3], [0.4, 0.6]])
    with pytest.raises(ValueError, match="sum to 1"):
        C.multiclass_ece(np.array([[0.7, 0.2], [0.4, 0.6]]), [0, 1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        C.multiclass_ece(np.array([[2.0, -1.0], [0.4, 0.6]]), [0, 1])  # logits
    with pytest.raises(ValueError, match="labels must lie"):
        C.multiclass_ece(probs, [0, 2])
    with pytest.raises(ValueError, match="labels must have shape"):
        C.multiclass_ece(probs, [0, 1, 1])


def _multilabel_example():
    rng = np.random.default_rng(1)
    n = 400
    p = rng.uniform(0, 1, (n, 3))
    y = np.stack([
        rng.uniform(0, 1, n) < p[:, 0],  # calibrated label
        rng.uniform(0, 1, n) < p[:, 1] ** 3,  # overconfident label
        rng.uniform(0, 1, n) < 0.05,  # rare label, scores unrelated
    ], axis=1).astype(int)
    return p, y


def test_multilabel_is_mean_of_per_label_binary_ece():
    p, y = _multilabel_example()
    per = [C.expected_calibration_error(p[:, c], y[:, c]) for c in range(3)]
    mean, got_per = C.multilabel_ece(p, y, return_per_label=True)
    np.testing.assert_allclose(got_per, per, rtol=1e-14)
    assert mean == pytest.approx(np.mean(per), rel=1e-14)
    assert C.multilabel_ece(p, y) == mean
    # an unweighted average over labels, not the ECE of all (sample, label) pairs pooled
    pooled = C.expected_calibration_error(p.ravel(), y.ravel())
    assert abs(mean - pooled) > 1e-3
    assert got_per[0] < 0.1 < got_per[1]


def test_multilabel_top_label_kind():
    p, y = _multilabel_example()
    c = 1
    dec = p[:, c] > 0.5
    want = C.expected_calibration_error(np.where(dec, p[:, c], 1 - p[:, c]), dec == (y[:, c] == 1))
    _, per = C.multilabel_ece(p, y, kind="top_label", return_per_label=True)
    assert per[c] == pytest.approx(want, rel=1e-14)
    with pytest.raises(ValueError, match="kind"):
        C.multilabel_ece(p, y, kind="max")


def test_multilabel_reliability_data_stacks_labels():
    p, y = _multilabel_example()
    df = C.multilabel_reliability_data(p, y, n_bins=10)
    assert len(df) == 30 and df["label"].tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert (df.groupby("label")["count"].sum() == len(p)).all()
    pd.testing.assert_frame_equal(
        df[df.label == 1].drop(columns="label").reset_index(drop=True),
        C.reliability_diagram_data(p[:, 1], y[:, 1], n_bins=10),
    )


@pytest.mark.parametrize(
    "conf,corr,kw,match",
    [([0.5, 1.2], [0, 1], {}, r"\[0, 1\]"), ([0.5, np.nan], [0, 1], {}, "NaN"),
     ([0.5, 0.6], [0, 2], {}, "0/1"), ([0.5, 0.6], [0, 1, 1], {}, "shape"),
     ([[0.5, 0.6]], [0, 1], {}, "shape"), ([0.5], [1], {"n_bins": 0}, "n_bins"),
     ([], [], {}, "empty")],
)
def test_input_errors(conf, corr, kw, match):
    with pytest.raises(ValueError, match=match):
        C.expected_calibration_error(np.asarray(conf, dtype=float), corr, **kw)


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    conf64 = torch.tensor(CONF, dtype=torch.float64)
    got = C.expected_calibration_error(conf64, torch.tensor(CORR), n_bins=5)
    assert got == pytest.approx(2.15 / 8, rel=1e-12)
    # float32 0.2 is 0.200000003 > 0.2: it lands in the next bin (values are used as given)
    got32 = C.expected_calibration_error(torch.tensor(CONF), torch.tensor(CORR, dtype=bool), 5)
    # bins: {.1} gap .1; {.2, .35} |.5 - .275| = .225 (n=2); {.5} .5; 4 x .175
    assert got32 == pytest.approx((0.1 + 2 * 0.225 + 0.5 + 4 * 0.175) / 8, rel=1e-6)


def test_plot_reliability_returns_figure():
    df = C.reliability_diagram_data(CONF, CORR, n_bins=5)
    fig = C.plot_reliability(df, title="demo")
    try:
        assert isinstance(fig, matplotlib.figure.Figure)
        ax = fig.axes[0]
        assert len(ax.patches) == 4  # one bar per non-empty bin
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any("ECE = 0.2688" in t for t in texts), texts  # 2.15 / 8
    finally:
        plt.close(fig)
    fig2, ax2 = plt.subplots()
    try:
        assert C.plot_reliability(df, ax=ax2) is fig2
    finally:
        plt.close(fig2)
    p, y = _multilabel_example()
    with pytest.raises(ValueError, match="several labels"):
        C.plot_reliability(C.multilabel_reliability_data(p, y))
    with pytest.raises(ValueError, match="lacks columns"):
        C.plot_reliability(df.drop(columns="count"))
