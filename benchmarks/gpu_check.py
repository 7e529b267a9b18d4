"""One prepared GPU check (``make gpu-check``): what a GPU does with the kit's paper profiles, in
one table, in at most about 8 minutes on one GPU.

1. DenseNet-121 training images/s at 224 px (forward, focal loss, backward, AdamW step, as the
   engine trains it): fp32 NCHW, bf16 autocast + channels-last, and fp16
   autocast + channels-last (the setting of timm's published figure), beside timm's figure:
   ``results/benchmark-train-amp-nhwc-pt112-cu113-rtx3090.csv`` in
   github.com/huggingface/pytorch-image-models: densenet121, 913.65 train samples/s, batch 256,
   224 px, AMP + channels-last, PyTorch 1.12 / CUDA 11.3 on an RTX 3090 (the NCHW file,
   ``benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv``, gives 730.11).
2. The loader's images/s per core at each paper profile's resolution
   (``benchmarks/bench_loader.py``'s loaders), beside the model's images/s.
3. Every non-smoke profile's rehearsal on CUDA (:mod:`lfakit.rehearse`): its measured train and
   evaluation step times, peak GPU memory and projected wall time on this GPU.
4. With two or more GPUs visible, the DDP test of ``tests/test_distributed.py`` (its ``main``)
   under torchrun over NCCL, on ``cuda:0`` and ``cuda:1``.

Without a CUDA GPU it says so and runs nothing heavy (exit 0).

    python benchmarks/gpu_check.py [--batch 256] [--steps 10] [--budget 480] [--no-rehearse] [--no-loader]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: timm's published DenseNet-121 training figure (see the module docstring)
TIMM_SOURCE = "timm results/benchmark-train-amp-nhwc-pt112-cu113-rtx3090.csv (RTX 3090, AMP fp16, channels-last, batch 256)"
TIMM_DENSENET121_TRAIN = 913.65
TIMM_DENSENET121_TRAIN_NCHW = 730.11


def no_gpu_message() -> str | None:
    """Why the check cannot run here, or None when a CUDA GPU is visible."""
    import torch

    if torch.cuda.is_available():
        return None
    return (f"gpu-check: no CUDA GPU visible (torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
            "nothing heavy was run. Run `make gpu-check` on a machine with an NVIDIA GPU.")


def densenet_rate(batch: int, steps: int, mode: str) -> tuple[float, float]:
    """Training images/s and peak GPU memory (bytes) of DenseNet-121 at 224 px
    (``bench_densenet_throughput.throughput``: the chestxray paper model, focal loss, AdamW).
    ``mode``: fp32 (NCHW, no autocast), bf16 (autocast bfloat16, channels-last, no scaler) or
    fp16 (autocast float16 with a GradScaler, channels-last: the engine's AMP, timm's setting)."""
    import torch
    from bench_densenet_throughput import throughput

    torch.cuda.reset_peak_memory_stats()
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode, torch.float16)
    rate = throughput("cuda", batch, steps, amp=mode != "fp32", channels_last=mode != "fp32", amp_dtype=amp_dtype,
                      warmup=2)
    peak = torch.cuda.max_memory_allocated()
    torch.cuda.empty_cache()
    return rate, peak


def loader_rates() -> list[tuple[str, float]]:
    """bench_loader's training-loader rows (kit path, one core): (profile, images/s)."""
    import bench_loader

    args = argparse.Namespace(repeats=1, n_files=24, model_batch=2, no_model=True, no_build=True, quick=False)
    rows: list = []
    with tempfile.TemporaryDirectory(prefix="lfakit-gpucheck-") as tmp:
        bench_loader.loaders(Path(tmp), args, rows)
    return [(name, ours) for what, name, ours, _, _ in rows if ours is not None]


def rehearsal_profiles() -> list[tuple[str, str]]:
    from lfakit import runner

    return [(e, p) for e in runner.experiments() for p in runner.profiles(e) if p != "smoke"]


def rehearse_all(deadline: float) -> list[list[str]]:
    """Every non-smoke profile rehearsed on CUDA, into a temporary results folder."""
    from lfakit import rehearse

    out = []
    for exp, prof in rehearsal_profiles():
        if time.monotonic() > deadline:
            out.append([f"rehearsal {exp} --profile {prof}", "skipped", "", "", "the check's time budget is spent"])
            continue
        t0 = time.perf_counter()
        try:
            r = rehearse.rehearse(exp, prof, log_output=False, verbose=False)
        except Exception as e:  # noqa: BLE001 - a failing rehearsal is the finding; report it and go on
            out.append([f"rehearsal {exp} --profile {prof}", "FAILED", "", "", f"{type(e).__name__}: {str(e)[:150]}"])
            continue
        t = r.plan.get("timing") or {}
        gpu = t.get("gpu_peak_bytes")
        step = (f"train {t['train_step_s']:.3g} s/step (batch {t['full_batch']}), eval {t['eval_step_s']:.3g} s"
                if t else "no device training")
        out.append([f"rehearsal {exp} --profile {prof}", f"ok in {time.perf_counter() - t0:.0f} s", step,
                    f"{gpu / 1e9:.1f} GB" if gpu else "",
                    f"projected {rehearse._h(r.plan['projected_seconds'])} on this GPU; disk {rehearse._gb(r.plan['disk_need'])}"
                    + (f"; would stop: {len(r.plan['blockers'])} item(s)" if r.plan["blockers"] else "")])
    return out


DDP_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import test_distributed as T
base = T.cfg
T.cfg = lambda **kw: base(**{{"device": "cuda", **kw}})
T.main(Path(sys.argv[1]))
"""


def ddp_nccl(timeout: int = 240) -> list[str]:
    """tests/test_distributed.py's torchrun main on two GPUs (NCCL)."""
    with tempfile.TemporaryDirectory(prefix="lfakit-ddp-") as tmp:
        script = Path(tmp) / "ddp_nccl.py"
        script.write_text(DDP_SCRIPT.format(tests=str(ROOT / "tests")))
        out = Path(tmp) / "out"
        out.mkdir()
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0,1")}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               str(script), str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        ok = proc.returncode == 0
        return ["DDP over NCCL, 2 GPUs (tests/test_distributed.py main)", "ok" if ok else "FAILED",
                f"{time.perf_counter() - t0:.0f} s", "", "" if ok else proc.stderr[-300:].replace("\n", " ")]


def table(rows: list[list[str]]) -> str:
    head = ["check", "result", "measured", "GPU memory", "reference / note"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line, sep] + ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256, help="DenseNet-121 batch (timm's figure: 256)")
    ap.add_argument("--steps", type=int, default=10, help="timed DenseNet-121 steps per setting")
    ap.add_argument("--budget", type=float, default=480, help="seconds; rehearsals that would start later are skipped")
    ap.add_argument("--no-rehearse", action="store_true")
    ap.add_argument("--no-loader", action="store_true")
    args = ap.parse_args(argv)
    why = no_gpu_message()
    if why:
        print(why)
        return 0
    import torch

    start = time.monotonic()
    name = torch.cuda.get_device_name(0)
    print(f"gpu-check on {name} ({torch.cuda.device_count()} visible), torch {torch.__version__}, CUDA {torch.version.cuda}")
    rows: list[list[str]] = []
    rates = {}
    for mode, label in (("fp32", "fp32, NCHW"), ("bf16", "bf16 autocast, channels-last"),
                        ("fp16", "fp16 AMP, channels-last")):
        try:
            rate, peak = densenet_rate(args.batch, args.steps, mode)
        except torch.cuda.OutOfMemoryError:
            rows.append([f"DenseNet-121 train 224 px, {label}, batch {args.batch}", "out of memory", "", "", ""])
            continue
        rates[mode] = rate
        ref = TIMM_DENSENET121_TRAIN if mode != "fp32" else TIMM_DENSENET121_TRAIN_NCHW
        rows.append([f"DenseNet-121 train 224 px, {label}, batch {args.batch}", "ok", f"{rate:,.0f} img/s",
                     f"{peak / 1e9:.1f} GB", f"{rate / ref:.2f}x timm's {ref:,.0f} img/s (RTX 3090, AMP"
                     f"{', NHWC' if mode != 'fp32' else ', NCHW'})"])
    if not args.no_loader:
        model_rate = rates.get("bf16") or rates.get("fp32")
        for prof, rate in loader_rates():
            note = (f"one core feeds {rate / model_rate:.1f}x DenseNet-121's bf16 rate" if model_rate and "224" in prof
                    else "per core")
            rows.append([f"loader {prof}", "ok", f"{rate:,.0f} img/s/core", "", note])
    if not args.no_rehearse:
        rows += rehearse_all(start + args.budget)
    if torch.cuda.device_count() >= 2:
        rows.append(ddp_nccl())
    else:
        rows.append(["DDP over NCCL", "skipped", "", "", "one GPU visible (needs two)"])
    print(table(rows))
    print(f"gpu-check: {time.monotonic() - start:.0f} s; timm's figure: {TIMM_SOURCE}")
    return 1 if any(r[1] == "FAILED" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
