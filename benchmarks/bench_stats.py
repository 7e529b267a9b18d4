"""Benchmark lfakit.stats against straightforward scikit-learn loops.

1. Paired bootstrap of the mean per-class AUROC (default N=2000, C=14, 200 replicates):
   ``paired_bootstrap(..., metric="auroc")`` (vectorised over replicates) versus a loop that
   calls ``sklearn.metrics.roc_auc_score`` for every replicate, class and model on the
   *same* resamples -- so the two intervals must agree, which the script checks.
2. DeLong test of one class's AUROC difference versus a scikit-learn bootstrap of the same
   difference (default 1000 replicates); the DeLong standard error and the bootstrap
   standard deviation should be close.
3. Paired bootstrap of an SRCC difference (IQA: 51 test images as the smoke profile, 2015 as
   KonIQ-10k's official test set; 1000 replicates): ``paired_bootstrap_correlation`` (ranks of a block of
   replicates at once) versus ``paired_bootstrap`` with ``scipy.stats.spearmanr`` called per
   replicate on the same resamples; the two results must be equal.

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_stats.py [--n 2000 --classes 14 --boot 200]
Timings are wall-clock, best of ``--repeat`` runs for the fast paths.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from lfakit.stats import _draw_indices, _replicate_blocks, _strata, delong_test, paired_bootstrap

# Roughly the ChestX-ray14 test-set prevalences (14 classes), cycled for other C.
PREVALENCE = [0.10, 0.03, 0.04, 0.02, 0.12, 0.02, 0.015, 0.002, 0.18, 0.05, 0.06, 0.03,
              0.013, 0.05]


def make_data(n: int, n_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    prev = np.resize(PREVALENCE, n_classes)
    y = (rng.random((n, n_classes)) < prev).astype(int)
    y[:2] = [[1] * n_classes, [0] * n_classes]  # every class has both label values
    shared = rng.normal(size=(n, n_classes))
    logit1 = shared + 1.0 * y + 0.7 * rng.normal(size=(n, n_classes)) - 2.0
    logit2 = shared + 1.1 * y + 0.7 * rng.normal(size=(n, n_classes)) - 2.0
    return y, 1 / (1 + np.exp(-logit1)), 1 / (1 + np.exp(-logit2))


def best_of(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def sklearn_loop_bootstrap(y, s1, s2, n_boot: int, seed: int):
    """The straightforward version: same resamples, roc_auc_score per replicate/class."""
    rng = np.random.default_rng(seed)
    strata = _strata(y, True)
    n = y.shape[0]
    deltas = []
    for size in _replicate_blocks(n_boot, n):
        for rows in _draw_indices(rng, strata, n, size):
            yr = y[rows]
            a1 = np.mean([roc_auc_score(yr[:, j], s1[rows, j]) for j in range(y.shape[1])])
            a2 = np.mean([roc_auc_score(yr[:, j], s2[rows, j]) for j in range(y.shape[1])])
            deltas.append(a2 - a1)
    return np.quantile(deltas, [0.025, 0.975])


def sklearn_bootstrap_one(y, s1, s2, n_boot: int, seed: int):
    """Plain bootstrap of one AUROC difference with roc_auc_score in a loop."""
    rng = np.random.default_rng(seed)
    n = y.shape[0]
    deltas = []
    while len(deltas) < n_boot:
        rows = rng.integers(0, n, n)
        if y[rows].min() == y[rows].max():
            continue
        deltas.append(roc_auc_score(y[rows], s2[rows]) - roc_auc_score(y[rows], s1[rows]))
    d = np.asarray(deltas)
    return d.std(ddof=1), np.quantile(d, [0.025, 0.975])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=14)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--boot-one", type=int, default=1000, help="replicates for part 2")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    y, s1, s2 = make_data(args.n, args.classes)
    print(f"python {platform.python_version()}, numpy {np.__version__}; "
          f"N={args.n}, C={args.classes}")

    print(f"\n[1] paired bootstrap of mean per-class AUROC, {args.boot} replicates")
    t_fast, fast = best_of(
        lambda: paired_bootstrap(y, s1, s2, metric="auroc", n_boot=args.boot, seed=0),
        args.repeat,
    )
    t0 = time.perf_counter()
    lo_hi = sklearn_loop_bootstrap(y, s1, s2, args.boot, seed=0)
    t_loop = time.perf_counter() - t0
    agree = np.allclose([fast["ci_low"], fast["ci_high"]], lo_hi, atol=1e-12)
    print(f"  vectorised paired_bootstrap : {t_fast:8.3f} s")
    print(f"  sklearn loop ({2 * args.boot * args.classes} calls) : {t_loop:8.3f} s")
    print(f"  speed-up                    : {t_loop / t_fast:8.1f} x")
    print(f"  delta={fast['delta']:.4f}  CI=[{fast['ci_low']:.4f}, {fast['ci_high']:.4f}]"
          f"  same CI as the loop: {agree}")

    j = int(np.argmax(y.mean(axis=0)))  # the most frequent class
    yj, a, b = y[:, j], s1[:, j], s2[:, j]
    print(f"\n[2] one AUROC difference (class {j}, {int(yj.sum())} positives)")
    t_delong, dl = best_of(lambda: delong_test(yj, a, b), max(args.repeat, 10))
    t0 = time.perf_counter()
    sd, boot_ci = sklearn_bootstrap_one(yj, a, b, args.boot_one, seed=0)
    t_skboot = time.perf_counter() - t0
    t_vboot, vb = best_of(
        lambda: paired_bootstrap(yj, a, b, n_boot=args.boot_one, seed=0), args.repeat
    )
    print(f"  DeLong test                           : {t_delong * 1e3:8.2f} ms")
    print(f"  sklearn bootstrap, {args.boot_one} replicates  : {t_skboot * 1e3:8.1f} ms"
          f"  ({t_skboot / t_delong:.0f} x DeLong)")
    print(f"  lfakit paired_bootstrap, {args.boot_one} reps : {t_vboot * 1e3:8.1f} ms"
          f"  ({t_skboot / t_vboot:.1f} x faster than sklearn loop)")
    print(f"  DeLong: delta={dl['delta']:.4f} se={dl['se']:.4f} "
          f"CI=[{dl['ci_low']:.4f}, {dl['ci_high']:.4f}] p={dl['p_value']:.4f}")
    print(f"  sklearn bootstrap: sd={sd:.4f} CI=[{boot_ci[0]:.4f}, {boot_ci[1]:.4f}]")
    print(f"  lfakit bootstrap (stratified): CI=[{vb['ci_low']:.4f}, {vb['ci_high']:.4f}] "
          f"p={vb['p_value']:.4f}")

    from scipy.stats import spearmanr

    from lfakit.stats import paired_bootstrap_correlation

    for n_iqa in (51, 2015):  # the smoke profile's test set, KonIQ-10k's
        b_iqa = 1000
        rng = np.random.default_rng(0)
        mos = rng.uniform(1, 5, n_iqa)
        s1, s2 = mos + rng.normal(0, 1.0, n_iqa), mos + rng.normal(0, 0.9, n_iqa)
        print(f"\n[3] paired bootstrap of an SRCC difference, {n_iqa} images, {b_iqa} replicates")
        t0 = time.perf_counter()
        fast_c = paired_bootstrap_correlation(mos, s1, s2, "srcc", n_boot=b_iqa, seed=1)
        t_fast_c = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref_c = paired_bootstrap(mos, s1, s2, metric=lambda y, s: spearmanr(y, s).statistic, n_boot=b_iqa, seed=1,
                                 stratified=False)
        t_ref_c = time.perf_counter() - t0
        same = all(abs(fast_c[k] - ref_c[k]) < 1e-12 for k in ("delta", "ci_low", "ci_high", "p_value"))
        print(f"  paired_bootstrap_correlation : {t_fast_c:8.3f} s")
        print(f"  spearmanr per replicate      : {t_ref_c:8.3f} s")
        print(f"  speed-up                     : {t_ref_c / t_fast_c:8.1f} x; same result: {same}")


if __name__ == "__main__":
    main()
