"""`lfakit list|run`: listing, and errors that stop before any work starts."""

from __future__ import annotations

import re

import pytest

from lfakit import cli

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
    missing = tmp_path / "ChestX-ray14"
    before = set(_runs(results_dir))
    assert cli.main(["run", EXP, "--profile", "paper", "-q", "-p", f"data_dir={missing}"]) == 1
    err = capsys.readouterr().err
    assert "Data_Entry_2017.csv" in err and "train_val_list.txt" in err
    assert "--profile smoke" in err  # how to run without the data
    assert "cell" in err and "DataError" in err
    (new,) = set(_runs(results_dir)) - before
    run = results_dir / EXP / new
    assert (run / "notebook.ipynb").exists() and (run / "params.yaml").exists()
    assert not (run / "checkpoints").exists()  # stopped before any training
