"""One-off: write notebooks/cf_ensemble.ipynb's cells (outputs come from `make notebooks`)."""
from _nb import code, md, tagged, write_notebook

cells = [
md("""# CF-Ensemble: focal loss and class weighting in a collaborative-filtering ensemble

Reproduces seed `001`. An ensemble's probability matrix **R** (classifiers × instances) is
factorised with confidence weights, `R ≈ XᵀY`, and an aggregator `p = σ(wᵀr̂ + b)` combines the
reconstructed column of each instance. The objective (see `lfakit.ensemble`):

`L = ρ·Σ c(r − xᵀy)² + (1 − ρ)·L_sup + λ·(‖X‖² + ‖Y‖²)`, with `L_sup` the class-weighted
(`n / (2·n_class)`) focal loss `(1 − p_t)^γ · BCE` averaged over the labelled instances.

* **ALS trainer**: X and Y in closed form (supervision reaches them only through label-aware
  confidence), the aggregator by gradient descent — class weights and focal loss act on the
  aggregator only. **PyTorch trainer**: every parameter by gradient descent (Adam) on `L`, so
  the weights reach X and Y too.
* Rows, as in the seed: *baseline* (no weighting), *class weights only*, *focal only* (γ =
  `focal_gamma`), *both*; against **simple averaging** of R and **stacking** (logistic
  regression on R's columns).
* Data: the seed's **synthetic** ensemble (500 instances, 10 classifiers, 10% positives,
  40% easy / 40% medium / 20% hard) and a **real** one, **digits**: ten scikit-learn classifiers
  of different families trained on part of `load_digits` (digit 8 against the rest, 9.7%
  positives) score the held-out images. Easy / hard on digits: the base classifiers' agreement.
* Transductive, as the original: half of the instances (stratified) are labelled, the other
  half are the **test** instances, whose labels are hidden. Accuracy uses the aggregator's rule
  `p > 0.5`. Every number is a mean ± std over `seeds` repetitions (new data, split and
  initialisation each), and every comparison a paired t-test over those seeds.
* `aggregator_lr = 0.1` (the original's benchmark value; its trainer default is 0.01, with which
  50 single steps leave the aggregator near its initial `w = 1/m, b = 0`).
* **Paper profile** (`lfakit run cf_ensemble --profile paper`): 20 seeds, 500 PyTorch steps.
"""),
code("""import lfakit.params
from lfakit import report
from lfakit.experiments import cf_ensemble as X"""),
tagged('''datasets: list = ["synthetic", "digits"]  # ensemble data sets: synthetic (the seed's simulation) and/or digits (scikit-learn classifiers on load_digits)
trainers: list = ["als", "pytorch"]  # CF-Ensemble trainers: als (closed-form factors) and/or pytorch (joint gradient descent)
seeds: int = 3  # repetitions with seeds seed, seed+1, ...; mean, std and paired tests are over them
n_instances: int = 500  # synthetic: instances
n_classifiers: int = 10  # synthetic: base classifiers
positive_rate: float = 0.1  # synthetic: share of positives
positive_digit: int = 8  # digits: the positive class (one against the rest)
base_fraction: float = 0.4  # digits: share of the images that trains the base classifiers (the rest form R)
labelled_fraction: float = 0.5  # share of the ensemble's instances with visible labels (the rest are the test instances)
confidence: str = "certainty"  # confidence C: certainty (0.1 + 0.9 |2r - 1|) or uniform (all ones)
latent_dim: int = 20  # latent dimension d
rho: float = 0.5  # weight of reconstruction against supervision (1 minus rho)
lambda_reg: float = 0.01  # ridge on the latent factors
focal_gamma: float = 2.0  # focal exponent of the focal rows (the other rows use 0)
aggregator_lr: float = 0.1  # ALS: gradient step of the aggregator
aggregator_steps: int = 1  # ALS: aggregator gradient steps per iteration
max_iter: int = 50  # ALS: iterations
tol: float = 0.0001  # ALS: stop when the objective changes by less (0 never stops early)
use_label_aware_confidence: bool = True  # ALS: raise the confidence of entries that agree with a known label
label_aware_alpha: float = 1.0  # ALS: strength of the label-aware confidence
max_epochs: int = 300  # PyTorch: full-batch gradient steps
lr: float = 0.01  # PyTorch: learning rate
optimizer: str = "adam"  # PyTorch: adam, adamw or sgd
patience: int = 20  # PyTorch: stop after this many steps without improvement (0 never stops early)
min_delta: float = 0.0001  # PyTorch: smallest loss decrease that counts as improvement
collapse_steps: list = [1, 3, 10]  # collapse study: ALS aggregator steps per iteration (times max_iter steps in all)
alpha: float = 0.05  # significance level of the paired tests
device: str = "cpu"  # cpu (the ensemble is small; auto also means cpu)
num_threads: int = 1  # torch CPU threads (fixed so runs repeat exactly)
seed: int = 42  # first seed (data, split, base classifiers, initial factors)
run_dir: str = ""  # run folder (set by `lfakit run`); empty: a new results/cf_ensemble/<time>-interactive
resume: bool = False  # accepted for the runner; the run takes about a minute, so it is simply redone''', "parameters"),
code("""P = lfakit.params.validate_notebook(X.EXPERIMENT, globals())
run_dir = X.setup(P)
X.silence_warnings()
print("seeds:", X.seed_list(P))
print("methods:", ", ".join(X.methods(P)))"""),
md("## Data\nOne ensemble per data set and seed. Sizes are the first seed's; the base classifiers' PR-AUC on the test instances is averaged over seeds (mean over classifiers, and the best classifier)."),
tagged("data = X.load_data(P)", "nbval-ignore-output"),
code("""print(report.format_table(X.data_summary(P, data), decimals=3))"""),
md("""## Focal weights
The relative weight `(1 − p_t)^γ` an example keeps against cross-entropy (γ = 0, weight 1), where
`p_t` is the probability the model gives the true class. With γ = 2 a confidently right example
(p_t = 0.95) keeps 0.25% of its weight, a badly wrong one (p_t = 0.1) 81%."""),
code("""print(report.format_table(X.focal_weight_table(), decimals=4))"""),
md("## Training\nEvery method on every data set and seed (the same data, split and initial factors for all of them)."),
tagged("runs = X.run_all(P, data)", "nbval-ignore-output"),
md("""## Results
Test instances, mean ± std over seeds. *Pred std* is the spread of the predicted probabilities and
*Pos. pred* the share predicted positive (about 0.1 would match the prevalence); a collapsed
aggregator shows a small spread and 0. Accuracy at 0.5 on 10%-positive data rewards predicting
everything negative, so read it with *Pos. pred*."""),
code("""per_seed = X.evaluate(P, data, runs)
tables = X.tables(P, per_seed)
print(report.format_table(tables["results"]))"""),
md("""### Which differences are significant
Test PR-AUC, paired over seeds: `Delta` = challenger − reference (mean), its 95% t-interval, and a
two-sided paired t-test. A winner marked `(n.s.)` is not significant at `alpha`; p-values are not
adjusted for the number of comparisons. With few seeds only large effects can be significant —
the paper profile runs 20."""),
code("""print(report.format_table(tables["comparison"]))"""),
md("""## The aggregator collapse
On 10%-positive data the unweighted gradient of the aggregator is dominated by the negatives. Its
first effect is to push every score down — through `b` and through the common part of `w`, since
the reconstructed probabilities are mostly positive — so the predictions crowd near the base rate,
below 0.5, before the weights have learnt which classifiers to trust: nearly constant predictions,
no positive predicted. Class weights `n / (2·n_class)` give both classes half of the gradient, so
the first steps move `w` toward the classifiers that separate the classes. The table follows the
ALS aggregator (γ = 0, first seed) for more and more gradient steps: the collapse is a property of
*slow* gradient descent under imbalance, not of the optimum — given enough steps the unweighted
aggregator spreads out too (stacking, an L2-regularised logistic regression on R fitted to
convergence, never collapses). The collapse is in the probabilities and decisions: the ranking,
hence PR-AUC, survives as long as the mean weight stays positive (column `Mean w`, from 1/m =
0.1 at the start). The seed's collapsed baseline had PR-AUC 0.071, below the 10% prevalence,
which needs a ranking worse than chance; the seed does not say how it arose (inverted weights
would do it), and this kit does not reproduce it. Note also that plain accuracy at `p > 0.5` rewards the
collapse on the mostly negative hard instances (the ALS baseline's high hard accuracy), while the
seed reports 0.12 for its collapsed baseline, which plain accuracy cannot give: read `Hard acc`
together with `Pos. pred`. Histograms of the predictions are in `figures/prediction_spread.png`."""),
code("""collapse, collapse_preds = X.collapse_study(P, data)
print(report.format_table(collapse, decimals=3))
print("\\n".join(X.collapse_verdicts(collapse)))"""),
code("""figs = X.figures(P, data, runs, per_seed, run_dir)"""),
code("""written = X.save(P, run_dir, data, runs, per_seed, tables, collapse)
print("\\n".join(written))"""),
]

write_notebook(cells, "notebooks/cf_ensemble.ipynb")
