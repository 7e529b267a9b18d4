"""Benchmark: the statistics a comparison of two losses needs at ChestX-ray14 scale.

25,596 test images x 14 classes (the official NIH test list; prevalences as the data set's),
two models' scores. Timed in one run, wall clock, one thread:

  (a) the kit: DeLong per class (``lfakit.stats.delong_test``) and ``--boot`` paired bootstrap
      replicates of the mean per-class AUROC (``paired_bootstrap(..., metric="auroc")``,
      vectorised over replicates);
  (b) the named baseline: scikit-learn's ``roc_auc_score`` for both models, every class and every
      replicate, on the same resamples. It is timed on ``--baseline-boot`` replicates and scaled
      linearly to ``--boot`` (each replicate costs the same), which the output says;
  (c) for reference, ``scipy.stats.bootstrap`` (paired, percentile) of the mean-AUROC
      difference with ``roc_auc_score`` as its statistic, on ``--baseline-boot`` replicates,
      scaled the same way.

The kit's interval is checked against (b) on the shared replicates (they must agree exactly).
Run:  OMP_NUM_THREADS=1 python benchmarks/bench_compare_stats.py [--boot 1000 --baseline-boot 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from lfakit.stats import _draw_indices, _strata, delong_contrast, delong_test, paired_bootstrap, seed_paired_bootstrap

PREVALENCE = [0.10, 0.03, 0.04, 0.02, 0.12, 0.02, 0.015, 0.002, 0.18, 0.05, 0.06, 0.03, 0.013, 0.05]


def data(n: int, c: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < np.resize(PREVALENCE, c)).astype(int)
    s1 = y * 0.8 + rng.normal(size=(n, c))
    s2 = y * 0.9 + rng.normal(size=(n, c))
    return y, s1, s2


def mean_auc(y, s):
    return float(np.mean([roc_auc_score(y[:, j], s[:, j]) for j in range(y.shape[1])]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=25_596)
    ap.add_argument("--classes", type=int, default=14)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--baseline-boot", type=int, default=20, help="replicates timed for the sklearn and scipy baselines")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per method in part (d), lfakit compare's statistics")
    args = ap.parse_args(argv)
    y, s1, s2 = data(args.n, args.classes)

    t0 = time.perf_counter()
    for j in range(args.classes):
        delong_test(y[:, j], s1[:, j], s2[:, j])
    t_delong = time.perf_counter() - t0
    t0 = time.perf_counter()
    kit = paired_bootstrap(y, s1, s2, metric="auroc", n_boot=args.boot, seed=0, stratified=True)
    t_boot = time.perf_counter() - t0

    # the same resamples, drawn as paired_bootstrap draws them, scored by sklearn
    rng = np.random.default_rng(0)
    rows = _draw_indices(rng, _strata(y, True), args.n, args.baseline_boot)
    t0 = time.perf_counter()
    ref = np.array([mean_auc(y[r], s2[r]) - mean_auc(y[r], s1[r]) for r in rows])
    t_sk = (time.perf_counter() - t0) * args.boot / args.baseline_boot
    kit_small = paired_bootstrap(y, s1, s2, metric="auroc", n_boot=args.baseline_boot, seed=0, stratified=True)
    lo, hi = np.quantile(ref, [0.025, 0.975])
    same = abs(lo - kit_small["ci_low"]) < 1e-12 and abs(hi - kit_small["ci_high"]) < 1e-12

    idx = np.arange(args.n)
    t0 = time.perf_counter()
    sps.bootstrap((idx,), lambda i: mean_auc(y[i], s2[i]) - mean_auc(y[i], s1[i]), n_resamples=args.baseline_boot,
                  vectorized=False, method="percentile", rng=np.random.default_rng(1))
    t_scipy = (time.perf_counter() - t0) * args.boot / args.baseline_boot

    # (d) what lfakit compare runs: seeds per method, the seed-mean difference (DeLong's contrast per
    # class, and one bootstrap over the shared test set), against sklearn on the same resamples
    rng_s = np.random.default_rng(7)
    S1 = np.stack([s1 + 0.1 * rng_s.normal(size=s1.shape) for _ in range(args.seeds)])
    S2 = np.stack([s2 + 0.1 * rng_s.normal(size=s2.shape) for _ in range(args.seeds)])
    w = np.r_[np.full(args.seeds, -1 / args.seeds), np.full(args.seeds, 1 / args.seeds)]
    t0 = time.perf_counter()
    for j in range(args.classes):
        delong_contrast(y[:, j], np.concatenate([S1[:, :, j], S2[:, :, j]]), w)
    seeds_kit = seed_paired_bootstrap(y, S1, S2, "auroc", n_boot=args.boot, seed=0)
    t_seeds = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_s = np.array([np.mean([mean_auc(y[r], a[r]) for a in S2]) - np.mean([mean_auc(y[r], a[r]) for a in S1])
                      for r in rows[: max(2, args.baseline_boot // 4)]])
    t_sk_s = (time.perf_counter() - t0) * args.boot / max(2, args.baseline_boot // 4)
    small = seed_paired_bootstrap(y, S1, S2, "auroc", n_boot=args.baseline_boot, seed=0)
    same_s = bool(np.allclose(small["replicates"][: len(ref_s), -1], ref_s, atol=1e-12, rtol=0))

    kit_total = t_delong + t_boot
    print(f"{args.n} samples x {args.classes} classes, {args.boot} paired bootstrap replicates, 1 thread")
    print(f"  (a) kit: DeLong x {args.classes} classes  {t_delong:8.2f} s")
    print(f"      kit: vectorised bootstrap      {t_boot:8.2f} s   (delta {kit['delta']:+.4f}, CI "
          f"[{kit['ci_low']:+.4f}, {kit['ci_high']:+.4f}])")
    print(f"  (b) sklearn roc_auc_score loop     {t_sk:8.1f} s   (timed on {args.baseline_boot} replicates, scaled)")
    print(f"  (c) scipy.stats.bootstrap + sklearn {t_scipy:7.1f} s   (timed on {args.baseline_boot} replicates, scaled)")
    print(f"  ratio (b) / (a): {t_sk / kit_total:.1f}x;  (c) / (a): {t_scipy / kit_total:.1f}x;  "
          f"kit interval equals sklearn's on the shared replicates: {same}")
    print(f"  (d) kit, {args.seeds} seeds per method: DeLong contrast x {args.classes} + bootstrap  {t_seeds:8.2f} s   "
          f"(delta {seeds_kit['mean']['delta']:+.4f})")
    print(f"      sklearn loop, same resamples   {t_sk_s:8.1f} s   (timed on {max(2, args.baseline_boot // 4)} replicates, "
          f"scaled);  ratio {t_sk_s / t_seeds:.1f}x;  replicates equal: {same_s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
