"""`lfakit list|run`: listing, and errors that stop before any work starts."""

from __future__ import annotations

import re

import pytest

from lfakit import cli, runner

EXP = "chestxray_zlpr"


def _runs(results_dir):
    d = results_dir / EXP
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_list_shows_experiments_profiles_and_parameters(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert EXP in out and "paper" in out and "smoke" in out
    assert cli.main(["list", EXP]) == 0
    out = capsys.readouterr().out
    for needle in ("losses", "list", "['focal', 'zlpr', 'fzlpr', 'bce', 'asl']", "losses to train, by registry name", "epochs", "int"):
        assert needle in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "losses=[zlp]"], "Did you mean: 'zlpr'"),
        (["-p", "epoch=1"], "unknown parameter 'epoch'.*Did you mean: 'epochs'"),
        (["-p", "epochs=two"], "'epochs' must be a int"),
        (["-p", "lr=-1"], "'lr' must be >="),
        (["--profile", "papr"], "no profile 'papr'.*'paper'"),
        (["-p", "baseline=bce", "-p", "losses=[focal]"], "baseline 'bce' is not among the trained losses"),
    ],
)
def test_bad_parameters_fail_before_any_work(args, message, capsys, results_dir):
    before = _runs(results_dir)
    assert cli.main(["run", EXP, *args]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert _runs(results_dir) == before  # no run folder was made


def test_unknown_experiment_suggests(capsys):
    assert cli.main(["run", "chestxray_zlp"]) == 2
    assert "'chestxray_zlpr'" in capsys.readouterr().err


def test_resume_unknown_run_id(capsys):
    assert cli.main(["run", EXP, "--resume", "no-such-run"]) == 2
    assert "cannot resume 'no-such-run'" in capsys.readouterr().err


def test_paper_profile_without_data_stops_at_once_saying_where_data_goes(capsys, results_dir, tmp_path):
    """Checked by the CLI before a run folder is made or a kernel started (runner.preflight)."""
    missing = tmp_path / "ChestX-ray14"
    before = _runs(results_dir)
    assert cli.main(["run", EXP, "--profile", "paper", "-q", "-p", f"data_dir={missing}"]) == 2
    err = capsys.readouterr().err
    assert "Data_Entry_2017.csv" in err and "train_val_list.txt" in err
    assert "--profile smoke" in err  # how to run without the data
    assert _runs(results_dir) == before  # no run folder, no notebook


def test_notebook_setup_runs_the_same_data_check(tmp_path):
    """In JupyterLab (no CLI) the notebook's first cell stops with the same message."""
    from lfakit.errors import DataError
    from lfakit.experiments import chestxray_zlpr

    P = runner.resolve_params(EXP, "paper", {"data_dir": str(tmp_path / "missing")})
    with pytest.raises(DataError, match="Data_Entry_2017.csv"):
        chestxray_zlpr.setup(P)


def test_run_all_goes_on_after_an_experiment_whose_data_are_missing(capsys, results_dir, monkeypatch):
    from lfakit.errors import DataError

    ran = []

    def fake_run(experiment, **kw):
        if experiment == EXP:
            raise DataError(f"{experiment}: no data here")
        ran.append(experiment)
        return runner.RunOutcome(experiment, results_dir, results_dir / "nb.ipynb", False)

    monkeypatch.setattr(runner, "run", fake_run)
    assert cli.main(["run-all", "-q"]) == 1
    err = capsys.readouterr().err
    assert f"{EXP}: error: {EXP}: no data here" in err and f"failed: {EXP}" in err
    assert sorted(ran) == sorted(e for e in runner.experiments() if e != EXP)
