"""Parameters of the CF-Ensemble experiment (ALS and PyTorch trainers, focal weights and class
weights, against averaging and stacking)."""

from __future__ import annotations

from lfakit.params import Spec, run_params

EXPERIMENT = "cf_ensemble"
DATASETS = ("synthetic", "digits")
TRAINERS = ("als", "pytorch")
OPTIMIZERS = ("adam", "adamw", "sgd")

SCHEMA: dict[str, Spec] = {
    "datasets": Spec(list, ["synthetic", "digits"], "ensemble data sets: synthetic (the CF-Ensemble study's simulation) and/or digits (scikit-learn classifiers on load_digits)", choices=DATASETS, nonempty=True),
    "trainers": Spec(list, ["als", "pytorch"], "CF-Ensemble trainers: als (closed-form factors) and/or pytorch (joint gradient descent)", choices=TRAINERS, nonempty=True),
    "seeds": Spec(int, 3, "repetitions with seeds seed, seed+1, ...; mean, std and paired tests are over them", min=1, max=1000),
    "n_instances": Spec(int, 500, "synthetic: instances", min=40, max=1_000_000),
    "n_classifiers": Spec(int, 10, "synthetic: base classifiers", min=2, max=1000),
    "positive_rate": Spec(float, 0.1, "synthetic: share of positives", min=0.01, max=0.5),
    "positive_digit": Spec(int, 8, "digits: the positive class (one against the rest)", min=0, max=9),
    "base_fraction": Spec(float, 0.4, "digits: share of the images that trains the base classifiers (the rest form R)", min=0.1, max=0.9),
    "labelled_fraction": Spec(float, 0.5, "share of the ensemble's instances with visible labels (the rest are the test instances)", min=0.05, max=0.95),
    "confidence": Spec(str, "certainty", "confidence C: certainty (0.1 + 0.9 |2r - 1|) or uniform (all ones)", choices=("certainty", "uniform")),
    "latent_dim": Spec(int, 20, "latent dimension d", min=1, max=1000),
    "rho": Spec(float, 0.5, "weight of reconstruction against supervision (1 minus rho)", min=0.0, max=1.0),
    "lambda_reg": Spec(float, 0.01, "ridge on the latent factors", min=0.0, max=1e6),
    "focal_gamma": Spec(float, 2.0, "focal exponent of the focal rows (the other rows use 0)", min=0.0, max=20.0),
    "aggregator_lr": Spec(float, 0.1, "ALS: gradient step of the aggregator", min=1e-9, max=100.0),
    "aggregator_steps": Spec(int, 1, "ALS: aggregator gradient steps per iteration", min=1, max=100_000),
    "max_iter": Spec(int, 50, "ALS: iterations", min=1, max=100_000),
    "tol": Spec(float, 0.0001, "ALS: stop when the objective changes by less (0 never stops early)", min=0.0, max=1.0),
    "use_label_aware_confidence": Spec(bool, True, "ALS: raise the confidence of entries that agree with a known label"),
    "label_aware_alpha": Spec(float, 1.0, "ALS: strength of the label-aware confidence", min=0.0, max=1e3),
    "max_epochs": Spec(int, 300, "PyTorch: full-batch gradient steps", min=1, max=1_000_000),
    "lr": Spec(float, 0.01, "PyTorch: learning rate", min=1e-9, max=10.0),
    "optimizer": Spec(str, "adam", "PyTorch: adam, adamw or sgd", choices=OPTIMIZERS),
    "patience": Spec(int, 20, "PyTorch: stop after this many steps without improvement (0 never stops early)", min=0, max=1_000_000),
    "min_delta": Spec(float, 0.0001, "PyTorch: smallest loss decrease that counts as improvement", min=0.0, max=1.0),
    "collapse_steps": Spec(list, [1, 3, 10], "collapse study: ALS aggregator steps per iteration (times max_iter steps in all)", nonempty=True),
    "alpha": Spec(float, 0.05, "significance level of the paired tests", min=1e-6, max=0.5),
    **run_params(EXPERIMENT, seed=42, num_threads=1),
}
SCHEMA["device"] = Spec(str, "cpu", "cpu (the ensemble is small; auto also means cpu)", choices=("cpu", "auto"))
SCHEMA["seed"] = Spec(int, 42, "first seed (data, split, base classifiers, initial factors)", min=0, max=2**32 - 1001)
SCHEMA["resume"] = Spec(bool, False, "accepted for the runner; the run takes about a minute, so it is simply redone", internal=True)


def check_params(p: dict) -> str | None:
    """Checks across parameters, run before any work starts."""
    if "als" in p["trainers"] and p["rho"] == 0:
        return "rho=0 leaves the ALS trainer nothing to fit (its latent factors ignore the labels); use rho > 0 or trainers=[pytorch]"
    bad = [k for k in p["collapse_steps"] if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100_000]
    if bad:
        return f"collapse_steps must be positive integers of at most 100000 (aggregator steps per ALS iteration), got {bad}"
    if p["focal_gamma"] == 0:
        return "focal_gamma=0 makes the focal rows equal to the unweighted ones; use a positive gamma (the CF-Ensemble study uses 2)"
    if "synthetic" in p["datasets"]:
        n_pos = round(p["positive_rate"] * p["n_instances"])
        if n_pos * p["labelled_fraction"] < 2 or n_pos * (1 - p["labelled_fraction"]) < 2:
            return (
                f"{p['n_instances']} instances at positive_rate {p['positive_rate']} give {n_pos} positives: too few "
                "for both the labelled and the test part to hold 2; raise n_instances or positive_rate"
            )
    return None
