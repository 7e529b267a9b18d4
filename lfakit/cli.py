"""``lfakit list | run | run-all | sweep | compare | report``: the command line over
:mod:`lfakit.runner`, :mod:`lfakit.sweep`, :mod:`lfakit.compare` and :mod:`lfakit.site`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lfakit.errors import LfakitError


def _range(spec) -> str:
    if spec.choices is not None or spec.choices_fn is not None:
        items = spec.allowed()
        return "{" + ", ".join(map(str, items)) + "}" if len(items) <= 6 else f"{{{len(items)} choices}}"
    if spec.min is not None or spec.max is not None:
        lo = "" if spec.min is None else f"{spec.min:g}"
        hi = "" if spec.max is None else f"{spec.max:g}"
        return f"[{lo}, {hi}]"
    return ""


def _cmd_list(args) -> int:
    """Experiments and profiles; with an experiment (or -v), its parameters: type, default,
    allowed values, what each profile sets, help. Reads the schemas only (no torch)."""
    from lfakit import params, runner

    exps = [args.experiment] if args.experiment else runner.experiments()
    if args.experiment:
        if args.experiment not in runner.experiments():
            from lfakit.errors import ParameterError, close_matches

            raise ParameterError(f"unknown experiment {args.experiment!r}.{close_matches(args.experiment, runner.experiments())} "
                                 f"Experiments: {', '.join(runner.experiments())}.")
    for exp in exps:
        profs = runner.profiles(exp)
        print(f"{exp}  (profiles: {', '.join(profs) or 'none'})")
        if not (args.experiment or args.verbose):
            continue
        sch = {k: v for k, v in params.schema(exp).items() if not v.internal}
        values = {pr: params.load_yaml(runner.project_root() / "params" / exp / f"{pr}.yaml") for pr in profs}
        width = max(len(n) for n in sch)
        for name, spec in sch.items():
            allowed = _range(spec)
            print(f"  {name:<{width}}  {params.TYPE_NAMES[spec.type]:<5} = {spec.default!r}"
                  + (f"  {allowed}" if allowed else ""))
            print(f"  {'':<{width}}  {spec.help}")
            set_by = [f"{pr}: {values[pr][name]!r}" for pr in profs if name in values[pr] and values[pr][name] != spec.default]
            if set_by:
                print(f"  {'':<{width}}  profiles: {'; '.join(set_by)}")
        print(f"\n  run: lfakit run {exp} [--profile {'|'.join(profs) or 'smoke'}] [-p name=value ...]")
    return 0


def _overrides(pairs: list[str]) -> dict:
    from lfakit.params import parse_override

    return dict(parse_override(p) for p in pairs or [])


def _run_one(experiment: str, args) -> int:
    from lfakit import distributed, runner

    t0 = time.perf_counter()
    if not distributed.is_main():  # under torchrun, rank 0 reports; the others ran in scratch folders
        args.quiet = True
    try:
        outcome = runner.run(
            experiment,
            profile=args.profile,
            overrides=_overrides(getattr(args, "param", None)),
            resume=getattr(args, "resume", None),
            timeout=args.timeout or None,
            log_output=not args.quiet,
            given=getattr(args, "fixed_on_resume", None),
        )
    except runner.RunInterrupted as e:
        if not distributed.is_main():
            return 130
        print(f"\nlfakit: {experiment} interrupted; its run folder is {e.run_dir}", file=sys.stderr)
        print(f"lfakit: continue it with: lfakit run {experiment} --resume {e.run_dir.name}", file=sys.stderr)
        if getattr(args, "all", False):
            raise _Stop() from None
        return 130
    except runner.RunFailed as e:
        print(f"lfakit: {experiment} failed: {e}", file=sys.stderr)
        if (e.run_dir / "checkpoints").exists():  # training had started: it can be continued
            print(f"lfakit: resume with: lfakit run {experiment} --resume {e.run_dir.name}", file=sys.stderr)
        return 1
    if outcome.already_complete:
        if distributed.is_main():
            print(f"{experiment}: run {outcome.run_dir.name} is already complete (metrics.json and manifest.json are "
                  f"written); nothing was run or changed -> {outcome.run_dir}")
        return 0
    if distributed.is_main():
        print(f"{experiment}: done in {time.perf_counter() - t0:.0f} s -> {outcome.run_dir}")
    return 0


def _cmd_rehearse(args) -> int:
    """``lfakit run <e> --rehearse``: the profile's code path on a few batches, then the plan."""
    from lfakit import rehearse, runner

    if args.resume is not None:
        from lfakit.errors import ParameterError

        raise ParameterError("--rehearse starts a new rehearsal; it cannot be combined with --resume")
    try:
        rehearse.rehearse(args.experiment, args.profile or "smoke", _overrides(args.param),
                          timeout=args.timeout or None, log_output=not args.quiet)
    except runner.RunFailed as e:
        print(f"lfakit: the rehearsal of {args.experiment} failed, so the real run would too: {e}", file=sys.stderr)
        return 1
    except runner.RunInterrupted as e:
        print(f"\nlfakit: rehearsal interrupted; its folder is {e.run_dir}", file=sys.stderr)
        return 130
    return 0


def _cmd_run(args) -> int:
    if getattr(args, "rehearse", False):
        return _cmd_rehearse(args)
    # --profile defaults to None here so that one given beside --resume (which keeps the run's
    # parameters) is refused like -p, not silently ignored; a new run without it uses smoke
    args.fixed_on_resume = [f"--profile {args.profile}"] if args.resume is not None and args.profile is not None else []
    if args.profile is None:
        args.profile = "smoke"
    return _run_one(args.experiment, args)


class _Stop(Exception):
    """Ctrl-C inside run-all: stop the whole job, not just the current experiment."""


def _cmd_run_all(args) -> int:
    from lfakit import runner

    args.all = True
    failed, done = [], []
    for exp in runner.experiments():  # a Ctrl-C (RunInterrupted from _run_one) ends the whole job
        if args.profile not in runner.profiles(exp):
            print(f"{exp}: no {args.profile!r} profile, skipped")
            continue
        try:
            code = _run_one(exp, args)
        except _Stop:
            print(f"lfakit: run-all stopped; done before the interrupt: {', '.join(done) or 'none'}", file=sys.stderr)
            return 130
        except LfakitError as e:  # e.g. this experiment's data are missing: go on with the next
            print(f"lfakit: {exp}: error: {e}", file=sys.stderr)
            code = 2
        if code:
            failed.append(exp)
        else:
            done.append(exp)
    print(f"results are under {runner.results_root()}")
    if failed:
        print(f"lfakit: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _cmd_sweep(args) -> int:
    from lfakit import sweep

    seeds = None
    if args.seeds:
        try:
            seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
        except ValueError:
            from lfakit.errors import ParameterError

            raise ParameterError(f"--seeds takes comma-separated integers, e.g. 0,1,2; got {args.seeds!r}") from None
    slurm = {k: v for k, v in (("partition", args.partition), ("time_min", args.time_min), ("gpus", args.gpus)) if v is not None}
    if args.rehearse:  # one rehearsal per distinct configuration, in this process; no sweep folder
        from lfakit import rehearse, runner

        try:
            rehearse.rehearse_sweep(args.experiment, args.profile, sweep.parse_grid(args.grid or []), seeds,
                                    timeout=args.timeout or None, log_output=not args.quiet)
        except runner.RunFailed as e:
            print(f"lfakit: a rehearsal of {args.experiment} failed, so that sweep point would too: {e}", file=sys.stderr)
            return 1
        return 0
    try:
        result = sweep.run_sweep(args.experiment, profile=args.profile, grid=sweep.parse_grid(args.grid or []), seeds=seeds,
                                 executor=args.executor, workers=args.workers, out=args.out,
                                 scheduler_address=args.scheduler_address, slurm=slurm or None,
                                 timeout=args.timeout or None, progress=not args.quiet, cluster=args.cluster,
                                 connect_timeout=args.connect_timeout)
    except sweep.SweepInterrupted as e:
        print(f"\nlfakit: sweep interrupted: {e}", file=sys.stderr)
        return 130
    print(sweep.summary(result))  # its last line names the sweep folder
    return result.exit_code


def _cmd_compare(args) -> int:
    from lfakit import compare

    result = compare.compare_folder(args.folder, baseline=args.baseline, metric=args.metric, out=args.out,
                                    alpha=args.alpha, n_boot=args.n_boot, seed=args.seed, ci_method=args.ci)
    print(result.text())
    print(f"written: {result.out_dir}")
    return 0


def _cmd_report(args) -> int:
    from lfakit import site
    from lfakit.runner import results_root

    results = Path(args.results) if args.results else results_root()
    report = site.build(results, Path(args.out) if args.out else None)
    for r in report.damaged:  # shown as damaged, with no figure, table or notebook; the other runs as usual
        print(f"lfakit: {r.path} is damaged and left out of the report but for its parameters: "
              + "; ".join(map(str, r.status.damage)), file=sys.stderr)
    print(f"report: {report.index}")
    return 0


def _cmd_check_loss(args) -> int:
    import yaml

    from lfakit import losses

    kwargs = yaml.safe_load(args.kwargs) if args.kwargs else {}
    if not isinstance(kwargs, dict):
        print(f"lfakit: error: --kwargs must be a mapping such as '{{gamma: 1.0}}', got {args.kwargs!r}", file=sys.stderr)
        return 2
    target = args.name
    if ":" in target:  # package.module:Class, not registered yet
        import importlib

        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
    report = losses.check(target, kwargs=kwargs, task=args.task, timing=not args.no_timing, verbose=True)
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lfakit", description="Run and compare loss-function experiments.")
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="experiments, their profiles and notebook parameters")
    ls.add_argument("experiment", nargs="?", help="show this experiment's parameters")
    ls.add_argument("-v", "--verbose", action="store_true", help="show every experiment's parameters")
    ls.set_defaults(func=_cmd_list)

    def common(sp):
        sp.add_argument("--profile", default="smoke", help="parameter profile in params/<experiment>/ (default: smoke)")
        sp.add_argument("--timeout", type=int, default=0, help="per-cell execution timeout in seconds (0 = none)")
        sp.add_argument("-q", "--quiet", action="store_true", help="do not stream the notebook's output")

    run = sub.add_parser("run", help="execute an experiment notebook into a new run folder")
    run.add_argument("experiment")
    run.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="override a parameter (repeatable; value read as YAML)")
    run.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run in results/<experiment>/RUN_ID "
                     "(a run id such as 20261201-093000-smoke, not a path), with the parameters it was started with")
    run.add_argument("--rehearse", action="store_true",
                     help="run the profile's exact code path on a few batches and one epoch (generated data in the real "
                          "layout without data_dir), then print the plan: step times, projected wall time, memory, disk "
                          "and what would stop the real run; the run folder is marked and never compared")
    common(run)
    run.set_defaults(profile=None)  # "smoke" for a new run (_cmd_run); given with --resume it is refused
    run.set_defaults(func=_cmd_run)

    ra = sub.add_parser("run-all", help="execute every experiment with one profile (the main job)")
    common(ra)
    ra.set_defaults(func=_cmd_run_all)

    sw = sub.add_parser("sweep", help="run one experiment over a parameter grid and seeds, one process per point")
    sw.add_argument("experiment")
    sw.add_argument("--profile", default="smoke", help="parameter profile of every point (default: smoke)")
    sw.add_argument("-g", "--grid", action="append", metavar="NAME=V1,V2",
                    help="a parameter and its values (repeatable; values read as YAML, split at top-level commas: "
                         "'losses=[focal],[zlpr]' is two points)")
    sw.add_argument("--seeds", metavar="0,1,2", help="seeds, one point per grid point and seed (default: the profile's seed)")
    sw.add_argument("--executor", choices=("local", "dask", "slurm"), default="local",
                    help="local process pool (default), a Dask cluster, or Slurm through submitit")
    sw.add_argument("-j", "--workers", type=int, default=1, help="points run at once (default 1)")
    sw.add_argument("--out", help="sweep folder (default: results/<experiment>/sweeps/<sweep-id>)")
    sw.add_argument("--timeout", type=int, default=0, help="wall-clock limit per point in seconds (0 = none)")
    sw.add_argument("--scheduler-address", help="dask: the scheduler of an existing cluster, tcp://host:port "
                                                "(default: a LocalCluster on this machine)")
    sw.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                    help="dask: seconds to wait for the scheduler at --scheduler-address and its first worker before "
                         "failing (default 10)")
    sw.add_argument("--partition", help="slurm: partition")
    sw.add_argument("--time-min", type=int, help="slurm: time limit per point in minutes")
    sw.add_argument("--gpus", type=int, help="slurm: GPUs per point")
    sw.add_argument("--cluster", help="slurm: submitit's cluster (default: slurm, which needs sbatch; 'local' runs the "
                                      "points as local processes through submitit, 'debug' in the sweep's process)")
    sw.add_argument("--rehearse", action="store_true",
                    help="rehearse each distinct configuration (points differing only in seed share one) and print "
                         "the sweep's plan instead of running it")
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=_cmd_sweep)

    cp = sub.add_parser("compare", help="compare the methods of a sweep or results folder over seeds, with intervals "
                                        "and corrected tests")
    cp.add_argument("folder", help="a sweep folder (with sweep.json), an experiment's results folder, or one run folder")
    cp.add_argument("--baseline", help="the method the others are compared with (default: the experiment's baseline)")
    cp.add_argument("--metric", help="the metric compared (default: the experiment's headline, e.g. auroc)")
    cp.add_argument("-o", "--out", help="where the tables and figure go (default: <folder>/comparison)")
    cp.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate of the Holm correction (default 0.05)")
    cp.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    cp.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    cp.add_argument("--ci", choices=("percentile", "bca"), default="percentile",
                    help="bootstrap interval: percentile (default) or BCa through scipy.stats.bootstrap (<= 5,000 instances)")
    cp.set_defaults(func=_cmd_compare)

    rp = sub.add_parser("report", help="build a static HTML report of a results folder (opens without a server)")
    rp.add_argument("results", nargs="?", help="results folder (default: results/ or $LFAKIT_RESULTS)")
    rp.add_argument("-o", "--out", help="site folder (default: <results>/site)")
    rp.set_defaults(func=_cmd_report)

    ck = sub.add_parser("check-loss", help="hold a loss to what the library's tests demand of every loss: one verdict "
                                           "per check, exit status 1 if one fails")
    ck.add_argument("name", help="a registered loss name (library, lfakit.losses entry point) or package.module:Class")
    ck.add_argument("--kwargs", metavar="YAML", help="arguments to build it with, e.g. '{gamma: 1.0}'")
    ck.add_argument("--task", choices=("multilabel", "multiclass", "iqa"),
                    help="the task of a package.module:Class without a task attribute")
    ck.add_argument("--no-timing", action="store_true", help="skip the CPU cost against the task's reference loss")
    ck.set_defaults(func=_cmd_check_loss)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LfakitError as e:
        print(f"lfakit: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `lfakit list | head`
        return 0
    except KeyboardInterrupt:  # before a run folder was made (after one, runner raises RunInterrupted)
        print("\nlfakit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
