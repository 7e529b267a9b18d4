"""How often does ``lfakit compare`` name a Winner between two EQUAL losses, and how often does it
find a real difference? The seed-level t (``lfakit.stats.seed_level_test``) against the baseline
of the kit before it: the test that takes the trained models as fixed (DeLong's contrast of the
seed means on a shared test set, the independent combination on per-seed test sets).

Simulated with ``lfakit.seedsim``: 2,000 test instances, prevalence 8% (one class) or 2-15%
(14 classes), every model scoring ``mu * y + a + 0.5 e``. R is the seed-to-seed SD of one pair's
AUROC difference over its test-set SE (the retraining noise). A false-Winner rate is acceptable
up to alpha + 3 Monte-Carlo SE. Run: ``.venv/bin/python benchmarks/bench_seed_calibration.py``
(about 10 minutes on one core; ``--quick`` for a smaller run)."""

from __future__ import annotations

import math
import sys
import time
import zlib

from lfakit.seedsim import Setting, simulate, simulate_classes

QUICK = "--quick" in sys.argv
REPS = 150 if QUICK else 400
ALPHA = 0.05


def bound(reps: int) -> float:
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / reps)


def row(label: str, s: Setting, reps: int = REPS) -> bool:
    r = simulate(s, reps=reps, seed=zlib.crc32(repr((s.seeds, s.R, s.test_sets, s.n_pos)).encode()) % 10_000)
    ok = r.rate <= bound(reps)
    print(f"| {label} | {s.seeds} | {s.R:g} | {r.rate:.3f} | {r.naive_rate:.3f} | {bound(reps):.3f} | "
          f"{'ok' if ok else 'ABOVE'} |", flush=True)
    return ok


def main() -> int:
    t0 = time.perf_counter()
    ok = True
    print(f"## False-Winner rate, equal losses, one class ({REPS} comparisons per row)\n")
    print("| test sets | seeds | R | seed-level t | fixed-model test (baseline) | alpha + 3 MC SE | |")
    print("|---|---|---|---|---|---|---|")
    for k in (3, 5, 10):
        for R in (0.0, 0.5, 1.0, 2.0):
            ok &= row("one, shared", Setting(seeds=k, R=R))
    for R in (0.0, 1.0, 2.0):
        ok &= row("own per seed", Setting(seeds=3, R=R, test_sets="independent"))
        ok &= row("re-splits of one pool (cf_ensemble)", Setting(seeds=3, R=R, n=2000, test_sets="pool"))
    for pos in (2, 3, 5, 10, 20):
        ok &= row(f"one, shared, {pos} positives", Setting(seeds=3, R=1.0, n_pos=pos))
    print("\nWith one seed per loss the kit names no Winner (rate 0 by construction); the fixed-model test's rate "
          "there at R = 0 / 1 / 2:", ", ".join(f"{simulate(Setting(seeds=1, R=R), reps=REPS, seed=1).naive_rate:.3f}"
                                             for R in (0.0, 1.0, 2.0)))
    creps = 40 if QUICK else 100
    print(f"\n## Fourteen classes, prevalence 2-15%, Holm over the classes and the mean ({creps} comparisons, "
          "200 bootstrap resamples)\n")
    print("| seeds | R | per-class raw p < 0.05 | any class Winner | mean Winner | any Winner | alpha + 3 MC SE |")
    print("|---|---|---|---|---|---|---|")
    for k, R in ((3, 0.0), (3, 0.5), (3, 1.0), (3, 2.0), (5, 2.0)):
        c = simulate_classes(k, R, reps=creps, seed=k * 10 + int(R))
        b = bound(creps)
        ok &= c.any / creps <= b
        print(f"| {k} | {R:g} | {c.raw_class:.3f} | {c.any_class / creps:.3f} | {c.mean / creps:.3f} | "
              f"{c.any / creps:.3f} | {b:.3f} |", flush=True)
    print(f"\n## Power: share of comparisons naming the better loss ({REPS // 2} per row, one class, shared test set)\n")
    print("| shift (AUROC) | R | 3 seeds | 5 seeds | 10 seeds | fixed-model test, 3 seeds |")
    print("|---|---|---|---|---|---|")
    for shift in (0.01, 0.03):
        for R in (0.0, 1.0):
            res = [simulate(Setting(seeds=k, R=R, shift=shift), reps=REPS // 2, seed=k) for k in (3, 5, 10)]
            print(f"| +{shift:g} | {R:g} | {res[0].rate:.2f} | {res[1].rate:.2f} | {res[2].rate:.2f} | "
                  f"{res[0].naive_rate:.2f} |", flush=True)
    print(f"\n{'every false-Winner rate within alpha + 3 MC SE' if ok else 'SOME RATE ABOVE alpha + 3 MC SE'}; "
          f"{time.perf_counter() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
