"""Parameter validation: unknown names, wrong types, ranges, YAML traps, profiles; and, for every
experiment the runner finds, notebook parameters vs SCHEMA vs profile files."""

from __future__ import annotations

import pytest
import yaml

from lfakit import params, runner
from lfakit.errors import ParameterError

EXP = "chestxray_zlpr"


def test_unknown_name_suggests_close_match():
    with pytest.raises(ParameterError, match=r"unknown parameter 'epoch'.*'epochs'"):
        params.validate(EXP, {"epoch": 3}, partial=True)


def test_unknown_loss_suggests_close_match():
    with pytest.raises(ParameterError, match=r"'zlp' is not allowed.*'zlpr'"):
        params.validate(EXP, {"losses": ["focal", "zlp"]}, partial=True)


def test_yaml_reads_1e_minus_3_as_text_and_we_take_it_as_float():
    raw = yaml.safe_load("lr: 1e-3\nweight_decay: 1.0e-5\n")
    assert isinstance(raw["lr"], str)  # the trap itself (YAML 1.1)
    out = params.validate(EXP, raw, partial=True)
    assert out["lr"] == pytest.approx(1e-3) and isinstance(out["lr"], float)


@pytest.mark.parametrize(
    "name, value, pattern",
    [
        ("epochs", "three", "must be a int"),
        ("epochs", 2.5, "must be an integer"),
        ("epochs", 0, ">= 1"),
        ("epochs", True, "boolean"),
        ("lr", -1.0, ">= "),
        ("lr", float("nan"), "finite"),
        ("pretrained", "yes", "true or false"),
        ("losses", "focal", None),  # a single name is accepted as a one-item list
        ("losses", [], "must not be empty"),
        ("losses", ["focal", "focal"], "twice"),
        ("model", "densenet", "densenet121"),
        ("loss_kwargs", {"focall": {}}, "'focal'"),
        ("val_fraction", 0.9, "<= 0.5"),
    ],
)
def test_bad_values(name, value, pattern):
    if pattern is None:
        assert params.validate(EXP, {name: value}, partial=True)[name] == ["focal"]
        return
    with pytest.raises(ParameterError, match=pattern):
        params.validate(EXP, {name: value}, partial=True)


def test_int_given_for_float_is_widened_and_integral_float_for_int_accepted():
    out = params.validate(EXP, {"lr": 1, "epochs": 3.0}, partial=True)
    assert out["lr"] == 1.0 and isinstance(out["lr"], float)
    assert out["epochs"] == 3 and isinstance(out["epochs"], int)


def test_missing_parameter_is_an_error_when_complete():
    with pytest.raises(ParameterError, match="missing parameter"):
        params.validate(EXP, {"epochs": 1})


def test_override_parsing():
    assert params.parse_override("losses=[focal, zlpr]") == ("losses", ["focal", "zlpr"])
    assert params.parse_override("lr=1e-4")[1] == "1e-4"  # text; validate() makes it a float
    with pytest.raises(ParameterError, match="name=value"):
        params.parse_override("epochs")


# ------------------------------------------------------------------ every experiment: notebook / SCHEMA / profiles
# Found by the runner's own discovery, so a new experiment (a notebook with a SCHEMA) is covered
# without touching this file.

EXPERIMENTS = runner.experiments()
PROFILES = [(exp, profile) for exp in EXPERIMENTS for profile in runner.profiles(exp)]

# Typos known to have a close match, beside the one derived for every parameter below.
TYPOS = {
    "chestxray_zlpr": [("batchsize", "batch_size")],
    "cf_ensemble": [("focal_gama", "focal_gamma")],
}


def _defaults(exp: str) -> dict:
    return params.defaults(exp)


def _typo(name: str) -> str:
    """``name`` with its middle character doubled (batch_size -> batchh_size)."""
    k = len(name) // 2
    return name[:k] + name[k] + name[k:]


def test_discovery_finds_every_experiment():
    """Each notebook has a schema (else it would silently drop out of the tests below) and each
    params/ folder belongs to an experiment."""
    from lfakit.catalog import ANALYSIS_NOTEBOOKS

    assert sorted([*EXPERIMENTS, *ANALYSIS_NOTEBOOKS]) == sorted(p.stem for p in runner.notebooks_dir().glob("*.ipynb"))
    assert not set(EXPERIMENTS) & set(ANALYSIS_NOTEBOOKS)
    assert sorted(p.name for p in (runner.project_root() / "params").iterdir() if p.is_dir()) == EXPERIMENTS
    assert {"chestxray_zlpr", "loss_atlas", "cifar_fece", "cf_ensemble"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_validate_notebook_catches_injected_unknown_names(exp):
    ns = _defaults(exp)
    ns.update({"In": [], "_": None, "params": params})  # IPython and module names are ignored
    assert params.validate_notebook(exp, ns) == params.validate(exp, _defaults(exp))
    sch = params.schema(exp)
    derived = [(_typo(name), name) for name in sch]
    for typo, meant in TYPOS.get(exp, []) + derived:
        assert typo not in sch, typo
        with pytest.raises(ParameterError, match=f"'{typo}'.*'{meant}'"):
            params.validate_notebook(exp, {**ns, typo: ns.get(meant, 1)})


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_notebook_parameters_cell_is_generated_from_the_schema(exp):
    """The schema is the one source of each parameter's type, default and help: the committed
    notebook's parameters cell is exactly what tools/sync_parameters.py writes from it, and
    papermill reads back the same names, types, defaults and help."""
    import nbformat

    nb = nbformat.read(runner.notebooks_dir() / f"{exp}.ipynb", as_version=4)
    cell = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cell) == 1 and cell[0].source == params.parameters_cell(exp), "run `make notebooks`"
    read = runner.notebook_parameters(exp)
    sch = params.schema(exp)
    assert list(read) == list(sch)
    for name, p in read.items():
        assert p["type"] == sch[name].type.__name__, name
        assert p["default"] == sch[name].default and p["help"] == sch[name].help, name
        assert p["help"], f"{name} has no help text"
    params.validate(exp, params.defaults(exp))  # defaults are valid


@pytest.mark.parametrize("exp, profile", PROFILES)
def test_profiles_validate(exp, profile):
    """Every committed profile resolves (notebook defaults + profile) without a ParameterError,
    to a value for every parameter of the notebook."""
    resolved = runner.resolve_params(exp, profile)
    assert set(resolved) >= set(runner.notebook_parameters(exp))


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_smoke_profile_equals_notebook_defaults(exp):
    """nbval executes the notebook's defaults; `lfakit run --profile smoke` must run the same."""
    assert "smoke" in runner.profiles(exp)
    assert runner.resolve_params(exp, "smoke") == params.validate(exp, _defaults(exp))


# ------------------------------------------------------------------ chestxray_zlpr


def test_paper_profile_is_the_seed_configuration():
    p = runner.resolve_params(EXP, "paper")
    assert (p["model"], p["pretrained"], p["image_size"], p["epochs"], p["batch_size"]) == ("densenet121", True, 224, 25, 8)
    assert (p["optimizer"], p["weight_decay"], p["seed"]) == ("adamw", 1e-5, 42)
    assert p["losses"] == ["focal", "zlpr", "fzlpr"] and p["baseline"] == "focal"
    assert p["loss_kwargs"]["focal"] == {"gamma": 2.0, "alpha": None}


def test_parameters_cell_writes_each_type_as_a_literal():
    text = params.parameters_cell("cifar_fece")
    assert 'dataset: str = "digits"  # ' in text
    assert "imbalance_ratios: list = [1, 10]  # " in text and "pretrained: bool = False  # " in text
    assert 'loss_kwargs: dict = {}  # per-loss arguments, e.g. {"f_ece": {"gamma": 2.0}}' in text


def test_engine_parameters_are_derived_from_fitconfig():
    from dataclasses import fields

    from lfakit.fitconfig import FitConfig

    sch = params.schema(EXP)
    engine_fields = [f.name for f in fields(FitConfig) if f.metadata.get("spec")]
    assert set(engine_fields) <= set(sch)
    assert sch["monitor"].allowed() == ["val_loss", "val_auroc"]
    cfg = FitConfig.from_params(runner.resolve_params(EXP, "smoke"))
    assert (cfg.epochs, cfg.lr, cfg.precision, cfg.monitor, cfg.seed) == (10, 0.003, "float64", "val_auroc", 42)


def test_validation_imports_neither_torch_nor_an_experiment():
    """Listing and validating stay fast: the schemas, the registry and params import no torch
    and no experiment code (run in a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import sys; from lfakit import runner; "
            "[runner.resolve_params(e, 'smoke') for e in runner.experiments()]; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('lfakit.experiments') or m == 'papermill']; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("exp, profile", [(e, p) for e, p in PROFILES if p != "smoke"])
def test_every_paper_profile_value_says_where_it_comes_from(exp, profile):
    """Each value of a non-smoke profile carries `# study: <where the study says so>` or
    `# kit: <why the kit chose it>`, so no number is credited to a study that does not state it."""
    path = runner.project_root() / "params" / exp / f"{profile}.yaml"
    bad = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not ("  # study: " in line or "  # kit: " in line):
            bad.append(f"{path.name}:{i}: {line}")
    assert not bad, "values without provenance:\n" + "\n".join(bad)


def test_comma_lists_read_their_items_as_values():
    assert params.validate(EXP, {"seeds": "0,1,2"}, partial=True)["seeds"] == [0, 1, 2]
    assert params.validate(EXP, {"seeds": "[0, 1]"}, partial=True)["seeds"] == [0, 1]
    assert params.validate(EXP, {"losses": "focal, zlpr"}, partial=True)["losses"] == ["focal", "zlpr"]
    with pytest.raises(ParameterError, match="every seed must be an integer"):
        params.validate(EXP, {"seeds": "0,a"}, partial=True)


@pytest.mark.parametrize("experiment", ["iqa_losses", "membership_inference"])
def test_too_few_resamples_for_the_holm_family_are_refused_before_any_work(experiment):
    """Each loss is tested against the baseline by a bootstrap p-value, at least 1/(n_boot + 1);
    Holm over a family of k challengers needs k/(n_boot + 1) < alpha, or every row is a tie
    (iqa_losses: k is its largest family, the study's losses against l1)."""
    base = params.defaults(experiment)
    if experiment == "iqa_losses":
        from lfakit.schemas.iqa_losses import holm_families

        base = {**base, "losses": ["l1", "l2", "plcc", "srcc", "rank", "fidelity", "norm_in_norm", "rank_mos"]}
        k = max(len(v) for v in holm_families(base).values())
        assert k == 4  # l2, plcc, rank, fidelity; the kit's srcc, norm_in_norm and rank_mos form the other family
        base["alpha"] = 0.03  # four tests reach 0.05 with fewer than the 100 resamples n_boot allows
    else:
        k = len(base["losses"]) - 1
    alpha = base["alpha"]
    need = params.min_resamples(k, alpha)
    assert k / (need + 1) < alpha <= k / need and need > 100
    few = need - 1
    with pytest.raises(ParameterError, match=rf"n_boot={few} is too few .* {k} bootstrap-tested .* Use n_boot={need} "):
        params.validate(experiment, {**base, "n_boot": few})
    assert params.validate(experiment, {**base, "n_boot": need})["n_boot"] == need
    assert params.validate(experiment, {**base, "n_boot": few, "alpha": 0.1})["n_boot"] == few


# ------------------------------------------------------------------ loss_kwargs without torch


def _verdict(fn) -> bool:
    """True when ``fn()`` accepts (returns), False when it refuses with a parameter error."""
    try:
        fn()
    except (ParameterError, TypeError, ValueError):
        return False
    return True


def test_static_loss_argument_table_matches_the_loss_classes():
    """``loss_kwargs`` is checked against lfakit.schemas._loss_args without torch; the table must
    say what the classes say: the same argument names, and the same verdict on values at, inside
    and outside every range (the classes, imported here, are the truth)."""
    from lfakit import losses
    from lfakit.catalog import loss_names
    from lfakit.schemas._loss_args import LOSS_ARGS

    assert sorted(LOSS_ARGS) == sorted(loss_names())
    probed = 0
    for name in loss_names():
        table = LOSS_ARGS[name]
        assert list(table) == list(losses.accepted_kwargs(name)), name
        for arg, rule in table.items():
            if rule.kind == "built":
                continue
            if rule.kind == "number":
                edges = [e for e in (rule.low, rule.high) if e is not None]
                values = [v for e in edges for v in (e, e - 1e-6, e + 1e-6, e - 1, e + 1)]
                values += [0, 0.5, 1, 3, -3, float("nan"), float("inf"), "two", True, None]
            elif rule.kind == "bool":
                values = [True, False, 1, "yes", None]
            else:
                values = [*rule.choices, "bogus", None, 1]
            for v in values:
                table_says = rule.problem(arg, v) is None
                class_says = _verdict(lambda: losses.build(name, **{arg: v}))
                assert table_says == class_says, f"{name}({arg}={v!r}): table {table_says}, class {class_says}"
                probed += 1
    assert probed > 200


@pytest.mark.parametrize("kwargs, pattern", [
    ({"focal": {"gama": 1}}, r"loss 'focal' has no argument 'gama'\. Did you mean: 'gamma'\? Its arguments are: gamma, alpha"),
    ({"focal": {"gamma": -1}}, r"loss 'focal': gamma must be >= 0, got -1; fix loss_kwargs\['focal'\]\['gamma'\]"),
    ({"fzlpr": {"tau": 0}}, r"loss 'fzlpr': tau must be > 0"),
    ({"asl": {"detach_focusing": "yes"}}, r"loss 'asl': detach_focusing must be True or False"),
    ({"focal": {"reduction": "avg"}}, r"loss 'focal': reduction must be one of \('none', 'mean', 'sum'\)"),
])
def test_loss_kwargs_values_are_refused_by_validation(kwargs, pattern):
    with pytest.raises(ParameterError, match=r"parameter 'loss_kwargs': " + pattern):
        params.validate(EXP, {"loss_kwargs": kwargs}, partial=True)


@pytest.mark.parametrize("exp, over, pattern", [
    ("chestxray_zlpr", {"losses": ["focal", "zlpr"], "loss_kwargs": {"fzlpr": {"tau": 0.1}}},
     r"loss_kwargs gives arguments for 'fzlpr', which this run does not train \(losses: \['focal', 'zlpr'\]\); "
     r"add it to losses or remove it from loss_kwargs"),
    ("cifar_fece", {"losses": ["bce", "focal"], "loss_kwargs": {"asl": {}, "f_ece": {"gamma": 1.0}}},
     r"arguments for 'asl', 'f_ece', which this run does not train.*add them to losses or remove them"),
    ("iqa_losses", {"losses": ["l1", "l2"], "loss_kwargs": {"fidelity": {"sigma": 2.0}}}, r"'fidelity', which this run does not train"),
    ("membership_inference", {"losses": ["ce", "gce"], "loss_kwargs": {"flooding": {"b": 0.2}}},
     r"'flooding', which this run does not train"),
])
def test_loss_kwargs_for_a_loss_not_trained_is_refused(exp, over, pattern):
    base = params.defaults(exp)
    with pytest.raises(ParameterError, match=pattern):
        params.validate(exp, {**base, **over})
    trained = {**over, "losses": [*over["losses"], *over["loss_kwargs"]]}  # the fix the message names
    assert params.validate(exp, {**base, **trained})["loss_kwargs"] == over["loss_kwargs"]


def test_a_single_loss_sweep_point_keeps_its_baselines_arguments():
    """`lfakit sweep chestxray_zlpr --profile paper -g losses=[zlpr],[fzlpr]`: each point trains one
    loss, and the profile's loss_kwargs for the baseline (focal) must not stop it."""
    p = runner.resolve_params(EXP, "paper", {"losses": ["zlpr"]})
    assert p["baseline"] == "focal" and "focal" in p["loss_kwargs"]


def test_a_square_image_size_is_not_a_duplicate():
    """``image_size`` is [height, width]: [64, 64] is a square, not an item listed twice."""
    assert params.validate("iqa_losses", {"image_size": [64, 64]}, partial=True)["image_size"] == [64, 64]
    with pytest.raises(ParameterError, match="twice"):
        params.validate("iqa_losses", {"losses": ["l1", "l1"]}, partial=True)
