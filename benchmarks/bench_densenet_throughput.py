"""DenseNet-121 training throughput (images/s) at 224 px through the kit's engine settings.

Measures forward + backward + AdamW step on random batches, on the CPU (fp32) and, when a GPU is
visible, on CUDA in fp32 and with the engine's AMP + channels_last; prints the ratios.

    python benchmarks/bench_densenet_throughput.py [--batch 8] [--steps 3] [--threads 0]
"""

from __future__ import annotations

import argparse
import time

import torch

from lfakit import losses, models


def throughput(device: str, batch: int, steps: int, amp: bool, channels_last: bool,
               amp_dtype: torch.dtype = torch.float16, warmup: int = 1) -> float:
    """Training images/s of DenseNet-121 at 224 px, 14 sigmoid outputs (the chestxray paper
    model), focal loss, AdamW: forward, loss, backward, step on one random batch. ``amp``:
    autocast to ``amp_dtype`` (float16 with a GradScaler, as the engine's AMP; bfloat16 without);
    ``warmup`` steps first (allocations, cuDNN autotune). ``benchmarks/gpu_check.py`` uses it too."""
    torch.manual_seed(0)
    model = models.build_model("densenet121", 14).to(device)
    x = torch.randn(batch, 3, 224, 224, device=device)
    y = (torch.rand(batch, 14, device=device) < 0.1).float()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-5)
    loss_fn = losses.build("focal")
    scaler = torch.amp.GradScaler(device, enabled=amp and amp_dtype == torch.float16)

    def step():
        with torch.autocast(device, dtype=amp_dtype, enabled=amp):
            out = model(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--gpu-batch", type=int, default=64)
    ap.add_argument("--gpu-steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = [("cpu fp32", a.batch, throughput("cpu", a.batch, a.steps, False, False))]
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        rows.append((f"cuda fp32 ({name})", a.gpu_batch, throughput("cuda", a.gpu_batch, a.gpu_steps, False, False)))
        rows.append((f"cuda amp+channels_last ({name})", a.gpu_batch, throughput("cuda", a.gpu_batch, a.gpu_steps, True, True)))
    base = rows[0][2]
    print(f"DenseNet-121 training throughput at 224 px ({torch.get_num_threads()} CPU threads)")
    print(f"{'setting':<48} {'batch':>5} {'img/s':>9} {'vs cpu':>8}")
    for name, b, ips in rows:
        print(f"{name:<48} {b:>5} {ips:>9.1f} {ips / base:>7.1f}x")
    if len(rows) == 3:
        print(f"AMP + channels_last vs fp32 on the GPU: {rows[2][2] / rows[1][2]:.2f}x")


if __name__ == "__main__":
    main()
