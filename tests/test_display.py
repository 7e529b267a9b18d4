"""How the notebooks display their results (lfakit.report, lfakit.runtime): tables as Markdown
with the corrected Winners in bold and non-results muted, figures sized for a notebook with their
smallest font recorded in the PNG, the run folder and what was written, and plain-text progress
that is one line per loop."""

from __future__ import annotations

import io
import math
import types

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lfakit import params, report, runtime  # noqa: E402

# The narrowest notebook the figures must read well in: JupyterLab's output area at a 1280 px
# window with the file browser open (tests/test_browser_notebooks.py measures it); ~1000 px is usual.
NOTEBOOK_PX = 850
MIN_SCREEN_PX = 9.0


@pytest.fixture
def displayed(monkeypatch):
    """What ``IPython.display.display`` was given, in order (no kernel needed)."""
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    return shown


def _comparison():
    return pd.DataFrame({
        "Challenger": ["zlpr", "zlpr", "zlpr", "asl"],
        "Class": ["A", "B", "Mean", "A"],
        "Delta": [0.0123, -0.2, -0.00001, 0.05],
        "p (Holm)": [0.51, 0.001, 0.02, float("nan")],
        "Winner": ["zlpr (n.s.)", "Baseline", "Baseline", "n/a"],
    })


# ------------------------------------------------------------------------------ tables


@pytest.mark.parametrize("column, value, expected", [
    ("Winner", "zlpr", "strong"),
    ("Winner", "Baseline", "strong"),  # the baseline won, significantly
    ("Winner", "zlpr (n.s.)", "muted"),
    ("Winner", "Tie (n.s.)", "muted"),
    ("Winner", "tie (n.s.)", "muted"),
    ("Winner", "tie", "muted"),
    ("Winner", "n/a", "muted"),
    ("Winner", "untestable", "muted"),
    ("Winner", "baseline", None),  # lfakit.compare: the baseline's own row
    ("Winner", "-", None),
    ("Verdict", "less leakage", "strong"),
    ("Verdict", "tie (n.s.)", "muted"),
    ("Δ SRCC vs l1 [95% CI]", "+0.0100 [-0.0200, +0.0400] n.s.", "muted"),
    ("focal", "+0.012 (p=0.300, Holm 1.000) n.s.", "muted"),
    ("focal", "+0.120 (p=0.001, Holm 0.010)", "strong"),  # a significant cell of cifar_fece's table
    ("Loss", "ns", None),
    ("Winner", 0.5, None),
])
def test_emphasis_rules(column, value, expected):
    assert report.emphasis(column, value) == expected


def test_markdown_table_bolds_corrected_winners_and_mutes_non_results():
    md = report.markdown_table(_comparison())
    lines = md.splitlines()
    assert lines[0] == "| Challenger | Class | Delta | p (Holm) | Winner |"
    assert lines[1] == "|:--|:--|--:|--:|:--|"  # numbers right-aligned
    nbsp = report.NBSP  # "(n.s.)" stays with its name: no line break inside the entry
    assert lines[2] == f"| zlpr | A | 0.0123 | 0.5100 | {report.MUTED_OPEN}zlpr{nbsp}(n.s.){report.MUTED_CLOSE} |"
    assert lines[3] == "| zlpr | B | **-0.2000** | 0.0010 | **Baseline** |"  # Delta of a Winner row in bold too
    assert lines[4] == "| zlpr | Mean | **0.0000** | 0.0200 | **Baseline** |"  # never -0.0000
    assert lines[5] == f"| asl | A | 0.0500 | nan | {report.MUTED_OPEN}n/a{report.MUTED_CLOSE} |"
    assert report.markdown_table(_comparison()) == md  # deterministic


def test_markdown_table_has_the_numbers_of_format_table():
    df = _comparison()
    number = r"-?\d+\.\d+|nan"
    import re

    assert re.findall(number, report.markdown_table(df)) == re.findall(number, report.format_table(df))


def test_markdown_cells_are_escaped_and_on_one_line():
    df = pd.DataFrame({"losses": ["bce, focal | zlpr"], "formula": ["$x$ * <y> [z]\nsoftmax(z)_0"],
                       "header@": ["TPR@0.1%"]})
    lines = report.markdown_table(df).splitlines()
    assert lines[0] == r"| losses | formula | header\@ |"
    assert lines[2] == r"| bce, focal \| zlpr | \$x\$ \* \<y\> \[z\] softmax(z)\_0 | TPR\@0.1% |"


def test_a_cell_of_numbers_does_not_wrap():
    df = pd.DataFrame({"PR-AUC": ["0.874 ± 0.044"], "AUC CI": ["[0.492, 0.545]"], "Configuration": ["focal only"]})
    row = report.markdown_table(df).splitlines()[2]
    assert row == "| 0.874\u00a0±\u00a00.044 | \\[0.492,\u00a00.545\\] | focal only |"


def test_markdown_table_includes_a_named_index():
    df = pd.DataFrame({"focal": [0.8, 0.3]}, index=pd.Index(["Avg AUROC", "Avg F1"], name="Metric"))
    assert report.markdown_table(df).splitlines()[0] == "| Metric | focal |"
    assert report.markdown_table(pd.DataFrame({"a": [1]})).splitlines()[0] == "| a |"


def test_table_shows_markdown_in_jupyterlab_and_format_table_as_plain_text():
    df = _comparison()
    t = report.Table(df, title="vs focal")
    assert t._repr_markdown_() == "**vs focal**\n\n" + report.markdown_table(df)
    assert repr(t) == "vs focal\n" + report.format_table(df)
    assert repr(report.Table(df)) == report.format_table(df)
    # what a notebook stores: both forms, the plain one as papermill's log prints it
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(t)
    assert data["text/markdown"] == t._repr_markdown_() and data["text/plain"] == repr(t)


def test_show_table_displays_one_table_per_block(displayed):
    df = _comparison()
    report.show_table(df)
    assert len(displayed) == 1 and isinstance(displayed[0], report.Table)
    displayed.clear()
    report.show_table(df, by="Challenger", title="baseline focal")
    assert [t.title for t in displayed] == ["baseline focal · Challenger: zlpr", "baseline focal · Challenger: asl"]
    assert "Challenger" not in displayed[0].df.columns and len(displayed[0].df) == 3
    assert displayed[1]._repr_markdown_().splitlines()[2] == "| Class | Delta | p (Holm) | Winner |"


def test_a_wrapped_loss_is_one_line():
    import lfakit.losses as L

    t = report.loss_table({"flooding": L.build("flooding"), "ce": L.build("ce")})
    assert list(t.columns) == ["Loss", "Built as"]
    assert t.loc[0, "Built as"] == ("FloodingLoss(b=0.1, reduction='mean', "
                                    "base=CrossEntropyLoss(label_smoothing=0.0, reduction='mean'))")
    assert "\n" not in report.markdown_table(t).splitlines()[2]


def test_written_summary_gives_the_absolute_run_folder_and_groups_what_was_written(tmp_path):
    files = ["params.yaml", "metrics.json", "figures/roc.png", "tables/a.csv",
             "checkpoints/bce/best.pt", "checkpoints/bce/last.pt", "checkpoints/focal/best.pt", "checkpoints/focal/last.pt",
             *[f"predictions/m{i:02d}.npz" for i in range(20)], *[f"history/h{i:02d}/a.csv" for i in range(13)]]
    text = report.written_summary(tmp_path / "run", files)
    lines = text.splitlines()
    assert lines[0] == f"run folder: {(tmp_path / 'run').resolve()}"
    assert lines[1] == "  ./            metrics.json, params.yaml"
    assert "checkpoints/  2 folders (bce, focal), each: best.pt, last.pt" in text
    assert "predictions/  20 files: m00.npz, m01.npz, …, m19.npz" in text
    assert "figures/      roc.png" in text
    assert "history/      13 folders (h00, h01, …, h12), each: a.csv" in text
    import configparser
    import re
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).parent / "nbval_sanitize.cfg")
    for s in cfg.sections():
        lines[0] = re.sub(cfg[s]["regex"], cfg[s]["replace"], lines[0])
    assert lines[0] == "run folder: PATH"  # nbval masks it


# ------------------------------------------------------------------------------ figures


def test_the_smallest_font_drawn_is_recorded_in_the_png(tmp_path):
    fig, axes = plt.subplots(1, 2, figsize=(4, 2))
    axes[0].set_title("title", fontsize=12)
    axes[0].tick_params(labelsize=7)
    axes[1].text(0.5, 0.5, "note", fontsize=6.5)
    axes[1].text(0.5, 0.2, "   ", fontsize=3)  # nothing drawn
    axes[1].axis("off")  # its tick labels are not drawn
    axes[1].tick_params(labelsize=4)
    path = report.save_figure(fig, tmp_path / "f.png", dpi=80)
    data = path.read_bytes()
    meta = report.png_text(data)
    assert meta[report.FONT_KEY] == "6.5" and meta[report.DPI_KEY] == "80"
    assert "Software" not in meta
    from PIL import Image

    img = Image.open(path)
    img.load()  # the chunks added before IEND keep the PNG valid
    assert img.size == (320, 160) and img.info[report.FONT_KEY] == "6.5"
    plt.close(fig)


def test_show_figures_shows_the_saved_file_and_closes_the_figure(tmp_path, displayed):
    from IPython.display import Image

    fig, ax = plt.subplots(figsize=(3, 2))
    report.save_figure(fig, tmp_path / "figures" / "a.png")
    other, _ = plt.subplots(figsize=(3, 2))
    report.show_figures({"a": fig, "b": other}, tmp_path / "figures")
    assert all(isinstance(d, Image) for d in displayed) and len(displayed) == 2
    assert displayed[0].data == (tmp_path / "figures" / "a.png").read_bytes()
    assert report.FONT_KEY in report.png_text(displayed[1].data)  # not saved: rendered with its metadata
    assert not plt.fignum_exists(fig.number) and not plt.fignum_exists(other.number)


def _kit_figures() -> dict:
    """Every figure the notebooks show, as a builder drawing it from small synthetic inputs of
    the notebooks' sizes (name -> function returning the figure)."""
    from lfakit import atlas
    from lfakit.experiments import cf_ensemble as CE
    from lfakit.experiments import cifar_fece as CF
    from lfakit.experiments import iqa_losses as IQ
    from lfakit.experiments import loss_atlas as LA
    from lfakit.experiments import membership_inference as MI
    from lfakit.metrics.classification import multilabel_report

    rng = np.random.default_rng(0)
    classes = [f"class_{j:02d}" for j in range(14)]
    losses = ["focal", "zlpr", "fzlpr", "bce", "asl"]
    y = (rng.random((150, 14)) < 0.15).astype(int)
    y[0], y[1] = 1, 0
    scores = {n: rng.normal(size=y.shape) + (1 + 0.3 * k) * y for k, n in enumerate(losses)}
    noise = {n: rng.normal(size=y.shape) for n in losses}
    hist = {n: pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.7, 0.6],
                             "val_auroc": [0.6, 0.7, 0.8]}) for n in losses + ["l1", "l2"]}
    labels = rng.integers(0, 10, 300)
    probs = {n: rng.dirichlet(np.ones(10), 300) for n in ["bce", "focal", "asl", "exp_ce", "f_ece"]}
    recall = {"10": {n: pd.DataFrame({"Recall": rng.random(10)}) for n in probs}}
    P = {"datasets": ["synthetic", "digits"], "trainers": ["als", "pytorch"], "seeds": 3}
    per_seed = pd.DataFrame([{"dataset": d, "seed": s, "method": m, "pr_auc": rng.random()}
                             for d in P["datasets"] for s in (1, 2, 3) for m in CE.methods(P)])
    mos = rng.uniform(1, 5, 51)
    runs = {n: IQ.Run(n, {"test": mos + rng.normal(size=51)}, 1, pd.DataFrame(), "complete")
            for n in ["l1", "l2", "plcc", "srcc", "rank", "fidelity", "norm_in_norm"]}
    names = ["nce", "mae", "gce", "logit_clip", "sce", "focal_ce", "phuber_ce", "logit_norm", "flooding", "ce"]
    attacks = ["loss", "confidence", "shadow", "lira_online", "lira_offline", "rmia"]
    member = np.arange(400) < 200
    ev = types.SimpleNamespace(  # one target (model 0), shaped like membership_inference.Evaluation
        targets=[0],
        results={n: {0: {a: types.SimpleNamespace(scores=rng.normal(size=400) + member) for a in attacks}} for n in names},
        metrics={n: {0: {a: {"auc": 0.6, "tpr@0.1%fpr": 0.01} for a in attacks}} for n in names},
        accuracy={n: {0: {"test": 0.9, "train": 1.0}} for n in names}, is_member=member)

    computed = {}

    def atlas_family(fam):
        if not computed:
            computed["A"] = LA.compute({**params.defaults("loss_atlas"), "grid_size": 21})
        A = computed["A"]
        if fam == "overview":
            return atlas.plot_overview(A.curves)
        views = atlas.views_of(fam)
        if fam == "iqa":
            return atlas.plot_family(A.iqa, views, x="x", y="pull")
        return atlas.plot_family(A.curves[A.curves["view"].isin(views)], views,
                                 reference=A.reference_curves[A.reference_curves["view"].isin(views)])

    return {
        "per_class_auroc_ci": lambda: report.plot_per_class_auroc_ci(y, {n: {0: s} for n, s in scores.items()}, classes),
        "per_class_auroc_ci_seeds": lambda: report.plot_per_class_auroc_ci(
            y, {n: {0: s, 1: s + noise[n]} for n, s in scores.items()}, classes),
        "per_class_auroc": lambda: report.plot_per_class_auroc(
            {n: multilabel_report(y, s, y, 1 / (1 + np.exp(-s)), classes) for n, s in scores.items()}),
        "roc_curves": lambda: report.plot_roc_curves(y, scores, classes),
        "history": lambda: report.plot_history(hist),
        "true_class_prob": lambda: CF.plot_true_class_probability(labels, probs, [str(c) for c in range(10)], {"3"}, "t"),
        "recall_vs_size": lambda: CF.plot_recall_vs_size(recall, {"10": np.arange(10, 110, 10)}, [str(c) for c in range(10)]),
        "pr_auc_by_method": lambda: CE.plot_metric_bars(P, per_seed),
        "focal_weights": CE.plot_focal_weights,
        "scatter_test": lambda: IQ.plot_scatter(runs, mos, pd.DataFrame({"Loss": list(runs), "SRCC": 0.5}), "1-5"),
        "roc_loglog": lambda: MI.plot_roc_loglog(ev, attacks),
        "privacy_utility": lambda: MI.plot_privacy_utility({"reference_attack": "lira_online"}, ev),
        **{f"atlas_{fam}": (lambda fam=fam: atlas_family(fam)) for fam in ("multilabel", "multiclass", "iqa", "overview")},
        "atlas_focus": lambda: atlas.plot_focus(atlas.slider_defaults(), atlas.pt_grid(21)),
    }


def test_every_figure_reads_at_notebook_width():
    """At most FIG_WIDTH inches wide and no text below MIN_FONT points: shown at 850 px (scaled
    down when wider), no text is below 9 px."""
    for name, build in _kit_figures().items():
        fig = build()
        meta = report.png_text(report.figure_png(fig))
        plt.close(fig)
        width_in = fig.get_figwidth()
        font = float(meta[report.FONT_KEY])
        natural = width_in * float(meta[report.DPI_KEY])
        on_screen = font * float(meta[report.DPI_KEY]) / 72 * min(1.0, NOTEBOOK_PX / natural)
        assert width_in <= report.FIG_WIDTH + 1e-9, (name, width_in)
        assert font >= report.MIN_FONT, (name, font)
        assert on_screen >= MIN_SCREEN_PX, (name, on_screen)


def test_seaborn_figures_are_deterministic():
    builders = _kit_figures()
    for name in ("per_class_auroc_ci_seeds", "pr_auc_by_method", "scatter_test"):
        a, b = builders[name](), builders[name]()
        assert report.figure_png(a) == report.figure_png(b), name
        plt.close(a)
        plt.close(b)


def test_per_class_auroc_intervals_are_delong_with_one_seed():
    from lfakit.stats import delong_contrast

    rng = np.random.default_rng(3)
    y = (rng.random((120, 3)) < 0.3).astype(int)
    s = rng.normal(size=y.shape) + y
    y[:, 2] = 0  # no AUROC: no row
    fig = report.plot_per_class_auroc_ci(y, {"a": {0: s}}, ["A", "B", "C"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]
    d = delong_contrast(y[:, 0], s[None, :, 0], [1.0])
    points = ax.lines[0]  # the AUROCs, then one line per interval
    np.testing.assert_allclose(points.get_xdata()[0], d["delta"], rtol=1e-12)
    err = [ln for ln in ax.lines[1:] if list(ln.get_ydata()) == [0, 0]][0]  # class A's interval
    np.testing.assert_allclose(sorted(err.get_xdata()), [d["ci_low"], d["ci_high"]], rtol=1e-9)
    plt.close(fig)


# ------------------------------------------------------------------------------ progress


def test_text_progress_is_one_line_per_loop(monkeypatch):
    monkeypatch.setenv("LFAKIT_PROGRESS", "text")
    out = io.StringIO()
    bar = runtime.progress(range(1, 11), True, desc="focal", total=10, initial=0, file=out)
    assert isinstance(bar, runtime.TextProgress)
    for epoch in bar:
        bar.set_postfix({"train_loss": "0.0364", "val_auroc": "0.8589"})
        if epoch == 7:  # early stopping: the loop ends after this epoch
            break
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "\r" not in out.getvalue()
    assert lines[0].startswith("focal: 7/10 in ") and lines[0].endswith("(train_loss=0.0364, val_auroc=0.8589)")
    out = io.StringIO()
    for _ in runtime.progress(range(4, 11), True, desc="zlpr", total=10, initial=3, file=out):
        pass
    assert out.getvalue().startswith("zlpr: 10/10 (from 3) in ")
    out = io.StringIO()
    for _ in runtime.progress(iter(range(3)), True, desc="models", unit="model", file=out):
        pass
    assert out.getvalue().startswith("models: 3 model in ")


def test_a_long_loop_also_reports_while_it_runs():
    out = io.StringIO()
    for _ in runtime.TextProgress(range(3), desc="slow", file=out, interval=0.0):
        pass
    lines = out.getvalue().splitlines()
    assert [ln.split(" ")[1] for ln in lines] == ["1/3", "2/3", "3/3"]
    assert lines[0].endswith("so far") and " in " in lines[-1]


def test_text_progress_goes_to_stdout_in_a_kernel_and_stderr_elsewhere(monkeypatch, capsys):
    for _ in runtime.TextProgress(range(2), desc="here"):
        pass
    captured = capsys.readouterr()
    assert "here: 2/2" in captured.err and captured.out == ""
    monkeypatch.setattr(runtime, "_in_kernel", lambda: True)  # a notebook: not the red stderr block
    for _ in runtime.TextProgress(range(2), desc="kernel"):
        pass
    captured = capsys.readouterr()
    assert "kernel: 2/2" in captured.out and captured.err == ""


def test_progress_off_and_interactive(monkeypatch):
    seq = [1, 2]
    assert runtime.progress(seq, False) is seq
    monkeypatch.delenv("LFAKIT_PROGRESS", raising=False)
    bar = runtime.progress(seq, True, desc="x", disable=True)
    assert type(bar).__module__.startswith("tqdm")  # tqdm.auto: a widget bar in JupyterLab
    assert list(bar) == seq
    assert math.isfinite(runtime.TEXT_INTERVAL)
