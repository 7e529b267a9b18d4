"""`lfakit run <experiment> --profile <p> --rehearse` (lfakit.rehearse): every non-smoke profile
under params/ rehearsed on the CPU, its plan printed with the projected time and disk, its run
folder left out by compare, report, a sweep's reuse and --resume, its checkpoints deleted at the end.

Shrunk for the test suite (``tiny=True``, about 3-4 minutes for all profiles on 2 cores), beyond
`lfakit run --rehearse`'s own one epoch: two losses (the baseline and the next), one seed, batch 2
(8 for membership's 32 x 32 images: small batches there cost 3x the time per image), a handful of items per
split (ChestX-ray14 16 images: 8 train / 2 val / 6 test; CIFAR-10 2 train + 2 test images per
class; KonIQ-10k 9 images, 3 per split, one patch each; a membership pool of 16 with the 4
reference models the attacks need), one torch thread and at most one DataLoader worker in the
kernel, n_boot 200, and the step-time probe at one image per batch and one timed step. The
long-tailed profile (cifar_fece lt, rho=100, which needs 200 images per class: 490 in the tail
at 224 px) is rehearsed at rho=2 on 4 images per class (`lfakit run --rehearse`: rho=10 on 20),
the same long-tail code path on fewer images, as the plan's notes say. cf_ensemble: two seeds, 10
ALS iterations, 50 PyTorch steps, the first two collapse-study settings.

Still covered: each profile's model (DenseNet-121, ResNet-50 at 224 px, Swin-B with its fusion
head, ResNet-18 CIFAR), its image size and precision, its loader with a worker process and
augmentation, the cache build from real-layout files at the real resolution (1024 x 1024 NIH
PNGs, 512x384 + 1024x768 KonIQ JPEGs, CIFAR-10 python batches, a long tail with imbalance ratio
> 1), every split's evaluation, statistics, tables, figures and the run record, the plan's
arithmetic on the real data sizes, and the deletion of the checkpoints (no ``*.pt`` left; the
plan, the marker and the record kept).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lfakit import compare, rehearse, runner
from lfakit.errors import ParameterError

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((p.parent.name, p.stem) for p in (ROOT / "params").glob("*/*.yaml") if p.stem != "smoke")


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LFAKIT_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LFAKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _offline(monkeypatch):
    """No network in tests: pretrained weights are 'not on disk and cannot be downloaded'."""
    from lfakit import models

    def fail(name, timeout=15.0):
        raise ParameterError(f"ImageNet weights for {name} are not on disk and could not be downloaded (offline test)")

    monkeypatch.setattr(models, "ensure_weights", fail)


def test_every_experiment_has_a_rehearsal_and_profiles_are_found():
    known = {"chestxray_zlpr", "cifar_fece", "iqa_losses", "membership_inference", "cf_ensemble", "loss_atlas"}
    assert known <= set(rehearse.KITS)
    for e in runner.experiments():  # one added later gets the generic rehearsal (one epoch) until it has an entry
        kit = rehearse.kit_for(e)
        assert kit is rehearse.KITS.get(e, rehearse.GENERIC)
    assert rehearse.GENERIC.shrink({"epochs": 9}, False) == {"epochs": 1}
    assert ("iqa_losses", "paper") in PROFILES and ("cifar_fece", "lt") in PROFILES
    assert not any(p == "smoke" for _, p in PROFILES)


def test_workloads_come_from_the_real_data_sizes():
    from lfakit.data.koniq import OFFICIAL_SIZES

    chest = runner.resolve_params("chestxray_zlpr", "paper")
    w = rehearse.KITS["chestxray_zlpr"].workload(chest)
    assert w.models == 3 and w.epochs == 25
    assert w.train + w.val == rehearse.NIH_TRAIN_VAL and w.final - w.val == rehearse.NIH_TEST
    assert w.cache_bytes == rehearse.NIH_IMAGES * 224 * 224
    iqa = runner.resolve_params("iqa_losses", "paper")
    w = rehearse.KITS["iqa_losses"].workload(iqa)
    assert w.models == len(iqa["losses"]) and w.train == OFFICIAL_SIZES["training"] * iqa["train_patch_num"]
    assert w.cache_bytes == sum(OFFICIAL_SIZES.values()) * 384 * 512 * 3
    lt = rehearse.KITS["cifar_fece"].workload(runner.resolve_params("cifar_fece", "lt"))
    bal = rehearse.KITS["cifar_fece"].workload(runner.resolve_params("cifar_fece", "paper"))
    assert bal.train + bal.val == rehearse.CIFAR_TRAIN and lt.train + lt.val == 12_406  # Cao et al.'s rho=100 counts
    mem = rehearse.KITS["membership_inference"].workload(runner.resolve_params("membership_inference", "paper"))
    assert mem.models == 170 and mem.train == 25_000 and 2e9 < mem.extra_bytes < 3e9


def _plan(**over):
    full = runner.resolve_params("chestxray_zlpr", "paper")
    timing = {"device": "cpu", "device_name": "CPU", "batch": 4, "eval_batch": 4, "full_batch": 8, "full_eval_batch": 16,
              "train_step_s": 0.5, "eval_step_s": 0.25, "parameters": 7_000_000, "gpu_peak_bytes": None, "amp": False,
              **over}
    return rehearse.make_plan("chestxray_zlpr", "paper", full, full, rehearse.KITS["chestxray_zlpr"], 10.0, [], [], timing)


def test_plan_arithmetic_and_what_would_stop_the_run(dirs, monkeypatch):
    plan = _plan()
    steps = -(-round(rehearse.NIH_TRAIN_VAL * 0.9) // 8)
    assert plan["train_steps_per_epoch"] == steps
    per_model = 25 * (steps * 0.5 + plan["val_steps_per_epoch"] * 0.25) + plan["final_steps"] * 0.25
    assert plan["projected_seconds"] == pytest.approx(3 * per_model)
    assert any("no CUDA device" in b for b in plan["blockers"])  # a GPU profile on a CPU
    assert not any("disk" in b for b in plan["blockers"])
    monkeypatch.setattr(rehearse, "_free", lambda p: (Path(p), 1000))
    plan = _plan(device="cuda")
    assert [b for b in plan["blockers"] if "too little disk" in b] and not any("CUDA" in b for b in plan["blockers"])
    text = rehearse.format_plan(plan)
    assert "projected wall time" in text and "disk for the full run" in text and "too little disk" in text


def _fake_run(results: Path, experiment: str, name: str, rehearsal: bool) -> Path:
    d = results / experiment / name
    d.mkdir(parents=True)
    (d / "params.yaml").write_text("seed: 1\n")
    (d / "metrics.json").write_text("{}")
    (d / "manifest.json").write_text("{}")
    if rehearsal:
        (d / compare.REHEARSAL_FILE).write_text(json.dumps({"rehearsal": True}))
    return d


def test_compare_report_and_resume_leave_a_rehearsal_out(dirs):
    from lfakit import site

    results = dirs / "results"
    real = _fake_run(results, "chestxray_zlpr", "20260101-000000-paper", False)
    reh = _fake_run(results, "chestxray_zlpr", "20260101-000001-rehearsal-paper", True)
    src = compare.find_runs(results / "chestxray_zlpr")
    assert src.run_dirs == [real.resolve()] and any(reh.name in n and "rehearsal" in n for n in src.not_used)
    with pytest.raises(ParameterError, match="rehearsal"):
        compare.find_runs(reh)
    with pytest.raises(ParameterError, match="rehearsal"):
        runner.resume_dir("chestxray_zlpr", reh.name)
    report = site.build(results)
    assert [r.path.name for r in report.runs] == [real.name]
    assert any(reh.name in n and "rehearsal" in n for n in report.notes)
    from lfakit.sweep import find_complete_runs

    assert all(p != reh for p in find_complete_runs("chestxray_zlpr", results).values())


def test_cli_refuses_rehearse_with_resume(dirs, capsys):
    from lfakit import cli

    assert cli.main(["run", "loss_atlas", "--rehearse", "--resume", "20260101-000000"]) == 2
    assert "--rehearse" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("experiment,profile", PROFILES, ids=[f"{e}-{p}" for e, p in PROFILES])
def test_every_non_smoke_profile_rehearses_on_the_cpu(experiment, profile, dirs, monkeypatch, capsys):
    _offline(monkeypatch)
    r = rehearse.rehearse(experiment, profile, tiny=True, log_output=False)
    out = capsys.readouterr().out
    assert "projected wall time of the full profile" in out and "disk for the full run" in out
    assert r.plan["projected_seconds"] > 0 and r.plan["disk_need"] > 0
    assert r.run_dir.name.split("-", 2)[2] == f"rehearsal-{profile}"
    marker = json.loads((r.run_dir / compare.REHEARSAL_FILE).read_text())
    assert marker["rehearsal"] is True and marker["status"] == "complete" and marker["plan"]["projected_seconds"] > 0
    assert runner.run_complete(r.run_dir)  # the whole record was written: the path ran to its end
    assert not list(r.run_dir.rglob("*.pt"))  # checkpoints deleted at the end; the record is still intact
    from lfakit.record import verify_run

    assert verify_run(r.run_dir) == [] and any("checkpoints" in n and "deleted" in n for n in r.plan["notes"])
    full = runner.resolve_params(experiment, profile)
    if full.get("pretrained"):
        assert any("pretrained weights" in b for b in r.plan["blockers"]) and r.params["pretrained"] is False
    if rehearse.wants_gpu(full):
        assert any("no CUDA device" in b for b in r.plan["blockers"])
        t = r.plan["timing"]
        assert t["train_step_s"] > 0 and t["full_batch"] == full["batch_size"]
    if "data_dir" in full and full["data_dir"]:  # the placeholder: generated data in the real layout
        assert any("data_dir" in b for b in r.plan["blockers"])
    if experiment == "cifar_fece" and max(full["imbalance_ratios"]) > 2:  # the long tail, on fewer images
        assert max(r.params["imbalance_ratios"]) == 2 and any("long tail rehearsed at rho=[2]" in n for n in r.plan["notes"])
    src = compare.find_runs(r.run_dir.parent)
    assert r.run_dir.resolve() not in src.run_dirs and any(r.run_dir.name in n for n in src.not_used)


def test_rehearsal_sizes_for_the_suite_and_for_the_cli():
    lt = runner.resolve_params("cifar_fece", "lt")
    assert rehearse.cifar_sample(lt, True) == ([2], 4, 2) and rehearse.cifar_sample(lt, False) == ([10], 20, 4)
    from lfakit.data.cifar import long_tail_counts

    assert min(long_tail_counts(4, 2)) == 2 and min(long_tail_counts(20, 10)) == 2  # a tail of 2: 1 train, 1 val
    paper = runner.resolve_params("cifar_fece", "paper")
    assert rehearse.cifar_sample(paper, True) == ([1], 2, 2)
    assert rehearse.suite_runtime(paper) == {"num_threads": 1, "num_workers": 1}
    assert rehearse.suite_runtime(runner.resolve_params("loss_atlas", "paper")) == {"num_threads": 1}
    probe = rehearse.KITS["cifar_fece"].probe(paper)
    assert probe.pixels == 224 * 224  # the 32 px images are resized to 224 inside the model: capped as 224 px


def test_checkpoints_are_deleted_and_the_manifest_follows(tmp_path):
    from lfakit.record import MANIFEST, verify_run, write_manifest

    run = tmp_path / "run"
    (run / "checkpoints" / "l1").mkdir(parents=True)
    (run / "checkpoints" / "l1" / "best.pt").write_bytes(b"x" * 10)
    (run / "checkpoints" / "l1" / "history.csv").write_text("epoch\n1\n")
    (run / "checkpoints" / "l2").mkdir()
    (run / "checkpoints" / "l2" / "last.pt").write_bytes(b"y" * 5)
    (run / "metrics.json").write_text("{}")
    write_manifest(run)
    assert "checkpoints/l1/best.pt" in json.loads((run / MANIFEST).read_text())["files"]
    assert rehearse.drop_checkpoints(run) == (2, 15)
    assert not list(run.rglob("*.pt")) and not (run / "checkpoints" / "l2").exists()
    assert (run / "checkpoints" / "l1" / "history.csv").exists() and (run / "metrics.json").exists()
    assert "checkpoints/l1/best.pt" not in json.loads((run / MANIFEST).read_text())["files"]
    assert verify_run(run) == []


def test_a_sweep_rehearses_each_distinct_configuration_once(monkeypatch, capsys):
    calls = []

    def fake(experiment, profile, overrides, **kw):
        calls.append(overrides)
        return rehearse.Rehearsal(Path("x"), {"projected_seconds": 3600.0, "disk_need": 1e9}, {})

    monkeypatch.setattr(rehearse, "rehearse", fake)
    rehearse.rehearse_sweep("chestxray_zlpr", "paper", {"losses": [["focal"], ["zlpr"]]}, [0, 1, 2])
    assert calls == [{"losses": ["focal"]}, {"losses": ["zlpr"]}]  # seeds share one rehearsal
    out = capsys.readouterr().out
    assert "6 sweep points, 2 distinct configuration(s)" in out and "projected 6.0 h" in out and "6.00 GB" in out
