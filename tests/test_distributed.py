"""One training in several processes (torchrun, DistributedDataParallel on gloo): the same
losses as one process, rank 0 alone writing, resume, a NaN on one rank stopping all, and the
single-process path never touching torch.distributed.

Tolerance. In float64 two ranks' gradients, averaged by DDP's all-reduce, are the gradient of
the single-process batch up to the order of the additions (per-rank means, then their mean,
instead of one mean over the batch): a difference in the last bit (~1e-16) per step. Over the
few dozen optimiser steps here that stays many orders of magnitude below the 1e-10 relative
tolerance the per-epoch losses are held to (measured: 0 for the training loss, ~3e-16 for the
validation loss).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lfakit import distributed, engine, losses, runner
from lfakit.errors import ParameterError

RTOL = 1e-10  # float64: see the module docstring
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")

# Run by torchrun in each of 2 processes; each rank writes what it saw to OUT/rank<r>.json.
SCRIPT = r'''
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from lfakit import distributed, engine, losses
from lfakit.errors import ParameterError, TrainingError


def data(n=100, seed=0):  # 100 samples: 6 global batches of 16 and one of 4 (2 per rank)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g, dtype=torch.float64)
    w = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = ((x @ w + 0.5 * torch.randn(n, 3, generator=g, dtype=torch.float64)) > 0).double()
    return TensorDataset(x, y)


def model(seed=0):  # no batch norm, no dropout: nothing that differs per rank
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def cfg(**kw):
    base = dict(epochs=4, batch_size=16, lr=0.05, scheduler="cosine", seed=3, progress=False, device="cpu",
                precision="float64")
    return engine.FitConfig(**{**base, **kw})


def acc(t, s):
    return float(((s > 0) == (t > 0.5)).mean())


class NaNOnRank(nn.Module):
    """BCE that turns NaN on one rank only, after ``after`` training batches."""

    def __init__(self, rank, after):
        super().__init__()
        self.rank, self.after, self.calls, self.inner = rank, after, 0, losses.build("bce")

    def forward(self, z, y):
        if z.requires_grad:
            self.calls += 1
        out = self.inner(z, y)
        return out * float("nan") if distributed.rank() == self.rank and self.calls > self.after else out


def rows(result):
    return result.history.drop(columns=["seconds"]).to_dict("list")


def weights(m):
    return torch.cat([v.flatten() for v in m.state_dict().values()]).tolist()


def main(out):
    torch.set_num_threads(1)
    r = distributed.rank()
    ckpt = out / f"ckpt{r}"
    res = {"world": distributed.world_size(), "rank": r}
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        full = engine.fit(model(), losses.build("bce"), data(), data(40, 1), cfg(progress=True),
                          checkpoint_dir=ckpt / "full", val_metrics={"acc": acc}, desc="ddp-full")
    res["progress_shown"] = "ddp-full" in err.getvalue()
    res["full"], res["weights"] = rows(full), weights(full.model)
    res["model_type"] = type(full.model).__name__
    engine.fit(model(), losses.build("bce"), data(), data(40, 1), cfg(), checkpoint_dir=ckpt / "cut",
               val_metrics={"acc": acc}, stop_after_epoch=1)
    # rank 0 alone has the checkpoint; a fresh, differently initialised model on every rank
    resumed = engine.fit(model(seed=99), losses.build("bce"), data(), data(40, 1), cfg(), checkpoint_dir=ckpt / "cut",
                         val_metrics={"acc": acc}, resume=True)
    res["resumed"], res["resumed_from"], res["resumed_weights"] = rows(resumed), resumed.resumed_from_epoch, weights(resumed.model)
    try:  # 7 batches per epoch: NaN on rank 1 only, at epoch 2, batch 2
        engine.fit(model(), NaNOnRank(1, after=7 + 2), data(), data(40, 1), cfg(), checkpoint_dir=ckpt / "nan")
    except TrainingError as e:
        res["nan"] = str(e)
    try:
        engine.fit(model(), losses.build("bce"), data(), data(40, 1), cfg(batch_size=15))
    except ParameterError as e:
        res["batch"] = str(e)
    # a child process (as a notebook kernel is) starts a group of its own on torchrun's store
    child = "from lfakit import distributed as d; d.init('cpu'); print(d.all_reduce_sum([d.rank() + 1])[0])"
    res["child_sum"] = float(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True,
                                            timeout=120).stdout.split()[-1])
    (out / f"rank{r}.json").write_text(json.dumps(res))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
'''


def _child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The script as a module (for the single-process reference) and its 2-process run's results."""
    root = tmp_path_factory.mktemp("ddp")
    script = root / "ddp_case.py"
    script.write_text(SCRIPT)
    spec = importlib.util.spec_from_file_location("ddp_case", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = root / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script), str(out)]
    try:
        proc = subprocess.run(cmd, cwd=root, env=_child_env(), capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as e:  # a rank waiting for a collective the other never joins
        pytest.fail(f"the 2-process training hung: {e}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    return module, out, ranks


@pytest.fixture(scope="module")
def reference(case):
    """The same training in this one process (WORLD_SIZE unset), on one thread as the children."""
    module = case[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return engine.fit(module.model(), losses.build("bce"), module.data(), module.data(40, 1), module.cfg(),
                          val_metrics={"acc": module.acc})
    finally:
        torch.set_num_threads(threads)


def _close(single, multi, what):
    single, multi = np.asarray(single, dtype=float), np.asarray(multi, dtype=float)
    assert single.shape == multi.shape, what
    np.testing.assert_allclose(multi, single, rtol=RTOL, atol=0, err_msg=what)


# ------------------------------------------------------------------ torchrun, 2 processes on gloo


def test_two_processes_train_as_one(case, reference):
    module, out, (r0, r1) = case
    assert r0["world"] == r1["world"] == 2
    h = reference.history
    for col in ("train_loss", "val_loss", "val_acc", "lr"):
        _close(h[col], r0["full"][col], col)
    assert r0["full"] == r1["full"]  # every rank has rank 0's history and weights
    assert r0["weights"] == r1["weights"]
    ref_w = torch.cat([v.flatten() for v in reference.model.state_dict().values()]).numpy()
    np.testing.assert_allclose(r0["weights"], ref_w, rtol=0, atol=1e-12)
    assert r0["model_type"] == r1["model_type"] == "Sequential"  # the unwrapped module, not DDP
    assert r0["progress_shown"] and not r1["progress_shown"]


def test_only_rank_0_writes_and_its_checkpoint_loads_in_one_process(case, reference):
    module, out, _ = case
    assert not (out / "ckpt1").exists() or not any((out / "ckpt1").rglob("*"))
    full = out / "ckpt0" / "full"
    assert {"last.pt", "best.pt", "history.csv"} <= {p.name for p in full.iterdir()}
    best = torch.load(full / "best.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in best)
    m = module.model(seed=7)
    m.load_state_dict(best)  # strict: the keys of the plain module
    last = torch.load(full / "last.pt", weights_only=True)
    assert last["epoch"] == 4 and len(last["history"]) == 4
    m.load_state_dict(last["model"])


def test_two_processes_resume_as_the_uninterrupted_run(case, reference):
    _, _, (r0, r1) = case
    assert r0["resumed_from"] == r1["resumed_from"] == 2
    assert r0["resumed"] == r1["resumed"] == r0["full"]  # the same arithmetic as the uninterrupted run
    assert r0["resumed_weights"] == r1["resumed_weights"] == r0["weights"]
    _close(reference.history["train_loss"], r0["resumed"]["train_loss"], "resumed train_loss")


def test_a_nan_on_one_rank_stops_every_rank(case):
    _, out, (r0, r1) = case
    assert "became nan on rank 1 at epoch 2, batch 2" in r1["nan"]
    assert "became non-finite on rank 1 at epoch 2, batch 2" in r0["nan"]
    assert str(out / "ckpt0" / "nan" / "last.pt") in r0["nan"] and str(out / "ckpt0" / "nan" / "last.pt") in r1["nan"]
    assert torch.load(out / "ckpt0" / "nan" / "last.pt", weights_only=True)["epoch"] == 1


def test_a_child_process_starts_its_own_group(case):
    """What every notebook kernel under `torchrun -m lfakit run-all` does, one after another."""
    _, _, (r0, r1) = case
    assert r0["child_sum"] == r1["child_sum"] == 3.0


def test_batch_size_must_split_over_the_processes(case):
    _, _, (r0, r1) = case
    for r in (r0, r1):
        assert "batch_size=15 is the global batch of all 2 processes" in r["batch"]
        assert "batch_size=14 or 16" in r["batch"]


# ------------------------------------------------------------------ in one process


def _positions(n):
    return TensorDataset(torch.arange(n))


@pytest.mark.parametrize("n,batch,world,drop_last", [(100, 16, 2, False), (96, 16, 4, False), (100, 16, 4, True),
                                                     (37, 8, 2, True)])
def test_the_ranks_batches_make_up_the_single_process_batches(n, batch, world, drop_last):
    cfg = engine.FitConfig(batch_size=batch, drop_last=drop_last, device="cpu", progress=False)
    seed = engine._epoch_seed(3, 2)
    single = [b[0].tolist() for b in engine._loader(_positions(n), batch, True, seed, 0, torch.device("cpu"), drop_last)]
    assert [i for b in single for i in b][: len(single) * batch] == engine.shuffled_order(n, seed)[: len(single) * batch]
    per_rank = [[b[0].tolist() for b in engine.rank_loader(_positions(n), cfg, seed, torch.device("cpu"), world, r)]
                for r in range(world)]
    assert len({len(p) for p in per_rank}) == 1  # every rank takes as many steps
    assert len(per_rank[0]) == len(single)
    for k, want in enumerate(single):
        got = [per_rank[r][k][j] for j in range(len(per_rank[0][k])) for r in range(world)]  # interleaved: order[r::world]
        if n % world == 0 or drop_last:
            assert got == want, k
        else:  # DistributedSampler repeats the first samples to fill the last batch
            assert got[: len(want)] == want and set(got[len(want):]) <= set(engine.shuffled_order(n, seed)[:world])


def test_distributed_samplers_own_permutation_is_not_the_loaders_order():
    """Why the engine gives DistributedSampler the order: its randperm(seed) differs from the
    single-process loader's, which takes a number from the generator first."""
    n, seed = 100, engine._epoch_seed(3, 1)
    plain = DistributedSampler(_positions(n), num_replicas=1, rank=0, shuffle=True, seed=seed)
    assert list(plain) != engine.shuffled_order(n, seed)
    loader = DataLoader(_positions(n), batch_size=n, shuffle=True, generator=torch.Generator().manual_seed(seed))
    assert next(iter(loader))[0].tolist() == engine.shuffled_order(n, seed)


def _tiny_fit(**kw):
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(24, 4, generator=g), (torch.rand(24, 2, generator=g) > 0.5).float())
    torch.manual_seed(0)
    cfg = engine.FitConfig(**{**dict(epochs=1, batch_size=8, device="cpu", progress=False), **kw})
    return engine.fit(torch.nn.Linear(4, 2), losses.build("bce"), ds, ds, cfg)


@pytest.mark.parametrize("world", [None, "1"])
def test_one_process_never_starts_torch_distributed(monkeypatch, world):
    for k in TORCHRUN_ENV:
        monkeypatch.delenv(k, raising=False)
    if world is not None:
        monkeypatch.setenv("WORLD_SIZE", world)
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.init() is False
    assert distributed.all_reduce_sum([1.5, 2]) == [1.5, 2.0] and distributed.broadcast_object({"a": 1}) == {"a": 1}
    distributed.barrier()
    _tiny_fit()
    assert not torch.distributed.is_initialized()


def test_batch_size_error_comes_before_any_process_group(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ParameterError, match=r"batch_size=10 .* must be a multiple of 4; use batch_size=8 or 12"):
        _tiny_fit(batch_size=10)
    assert not torch.distributed.is_initialized()


# ------------------------------------------------------------------ the runner under torchrun


@pytest.fixture
def fake_execute(monkeypatch):
    """runner.execute replaced: records what it was given and writes into the run folder."""
    seen = []

    def execute(experiment, params, run_dir, timeout=None, log_output=True):
        run_dir = Path(run_dir)
        seen.append({"run_dir": run_dir, "params": dict(params), "log_output": log_output,
                     "files": sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())})
        (run_dir / "metrics.json").write_text("{}")
        return run_dir / runner.NOTEBOOK_NAME

    monkeypatch.setattr(runner, "execute", execute)
    return seen


def test_other_ranks_run_into_a_scratch_folder_deleted_afterwards(monkeypatch, fake_execute, results_dir):
    monkeypatch.setenv("WORLD_SIZE", "2")
    before = set(results_dir.rglob("*"))
    monkeypatch.setenv("RANK", "1")
    outcome = runner.run("loss_atlas")
    assert set(results_dir.rglob("*")) == before  # no run folder, no record
    call = fake_execute[-1]
    assert results_dir not in call["run_dir"].parents and not call["log_output"]
    assert call["params"]["run_dir"] == str(call["run_dir"]) and call["params"]["resume"] is False
    assert not outcome.run_dir.exists()
    monkeypatch.setenv("RANK", "0")  # rank 0 runs as always
    outcome = runner.run("loss_atlas")
    assert results_dir in outcome.run_dir.parents and (outcome.run_dir / runner.PARAMS_NAME).exists()
    assert fake_execute[-1]["log_output"]


def test_other_ranks_resume_from_rank_0s_folder_without_its_checkpoints(monkeypatch, fake_execute, results_dir):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    first = runner.run("loss_atlas").run_dir
    (first / "predictions").mkdir()
    (first / "predictions" / "done.npz").write_bytes(b"x")
    (first / "checkpoints" / "t").mkdir(parents=True)
    (first / "checkpoints" / "t" / "last.pt").write_bytes(b"x")
    monkeypatch.setenv("RANK", "1")
    runner.run("loss_atlas", resume=first.name)
    call = fake_execute[-1]
    assert "predictions/done.npz" in call["files"] and "checkpoints/t/last.pt" not in call["files"]
    assert call["params"]["resume"] is True
    assert yaml.safe_load((first / runner.PARAMS_NAME).read_text())["run_dir"] == str(first)  # rank 0's untouched
    assert not call["run_dir"].exists()


def test_a_process_pool_cannot_join_a_torchrun_training(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    params = runner.resolve_params("membership_inference", "smoke", {"workers": 2})
    with pytest.raises(ParameterError, match="workers=2 .* under torchrun use workers=1"):
        runner.preflight("membership_inference", params)


@pytest.mark.slow
def test_torchrun_lfakit_run_leaves_one_run_folder(tmp_path):
    """`torchrun -m lfakit run` end to end (about 20 s on 2 free cores): both kernels train
    together, rank 0 makes the one run folder, rank 1's scratch folder is gone afterwards."""
    results, scratch = tmp_path / "results", tmp_path / "tmp"
    scratch.mkdir()
    env = {**_child_env(), "LFAKIT_RESULTS": str(results), "TMPDIR": str(scratch)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "lfakit", "run",
           "cifar_fece", "-q", "-p", "epochs=2", "-p", "losses=[bce, focal]", "-p", "imbalance_ratios=[1]",
           "-p", "num_threads=1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    runs = list((results / "cifar_fece").iterdir())
    assert len(runs) == 1 and (runs[0] / "metrics.json").exists() and (runs[0] / "notebook.ipynb").exists()
    assert {p.name for p in (runs[0] / "checkpoints").iterdir()} == {"rho1_fold1_bce", "rho1_fold1_focal"}
    assert not list(scratch.glob("lfakit-rank*"))
    # rank 0 alone reports, naming the one run folder (rank 1's scratch folder is gone)
    assert proc.stdout.count("cifar_fece: done") == 1 and str(runs[0]) in proc.stdout
