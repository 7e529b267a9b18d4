"""One-off: write notebooks/cifar_fece.ipynb's cells (outputs come from `make notebooks`)."""
from _nb import code, md, tagged, write_notebook

cells = [
md("""# Loss Function Assessment on CIFAR-10 and CIFAR-10-LT: BCE, focal, ASL, ECE, F-ECE

Reproduces seed `003` (LFA-CIFAR10): every loss trains the same network **one-vs-rest** (sigmoid
head, one-hot targets) and is judged **per class**, with emphasis on the hard-to-learn classes.
`exp_ce` is LFA's "ECE", the *exponential cross-entropy* (not a calibration error); `f_ece` is its
focal-balanced variant F-ECE.

* **Metrics** (`lfakit.metrics.lfa`): per class, the threshold maximising F1 on **validation**,
  then on **test** AUC, accuracy (one-vs-rest), precision, recall, F0.5, F0 (which *is* the
  precision: F-beta with beta = 0), F1, and the kit's own **miss** = FN/(TP+FN) and
  **overflow** = FP/(TP+FP). Table 2 gives mean ± std **across classes** (every class weighs the
  same; never frequency-weighted).
* **Long tail** (Cao et al.): class *i* of *K* keeps `int(n_max·(1/ρ)^(i/(K−1)))` images of the
  training **pool** (CIFAR-10: `int(5000·(1/ρ)^(i/9))`, a seeded random subset of each class,
  where Cao et al.'s script keeps the first ones); the test set stays balanced. Validation is
  carved from that pool, stratified (`val_fraction`), so the `train` split holds
  `1 − val_fraction` of each count and validation has the training class mix (a head class of
  CIFAR-10 has no image to spare for a balanced one): per-class thresholds are tuned at the
  training prior, not at the balanced test's. `folds ≥ 2` gives stratified k-fold
  cross-validation of the pool. The LFA seed's "CIFAR10_LT" table (non-monotone class sizes) is
  not this profile.
* **Smoke profile** (the defaults below): scikit-learn's bundled digits (1,797 real 8×8 images, a
  fixed balanced test set of 50 per class), balanced (ρ = 1) **and** long-tailed (ρ = 10) in one
  run, a tiny CNN on CPU. Digits are easy: the numbers show that the pipeline works, not how the
  losses compare on CIFAR.
* **Paper profile** (`lfakit run cifar_fece --profile paper -p data_dir=...`): CIFAR-10 from the
  `cifar-10-batches-py/` folder, ResNet-50 (ImageNet weights, inputs resized to 224 px on the GPU),
  Adam lr 1e-5, weight decay 1e-3, batch 100, 20 epochs. **`lt` profile**: the same on CIFAR-10-LT, ρ = 100.
"""),
code("""import lfakit.params
from lfakit import report
from lfakit.experiments import cifar_fece as X"""),
tagged('''dataset: str = "digits"  # digits (scikit-learn's bundled 8x8 digits, embedded) | cifar10
data_dir: str = ""  # cifar10 only: folder holding cifar-10-batches-py/ (or the batch files themselves)
imbalance_ratios: list = [1, 10]  # long-tail ratios rho (head/tail images) to run; 1 is balanced
val_fraction: float = 0.2  # share of each class's training images held out for validation (thresholds)
folds: int = 0  # k-fold cross-validation of the training set (0: one stratified validation split)
digits_test_per_class: int = 50  # digits only: balanced test images per class (a fixed draw)
losses: list = ["bce", "focal", "asl", "exp_ce", "f_ece"]  # losses to train, by registry name
baseline: str = "bce"  # loss every other loss is compared against (DeLong per class)
loss_kwargs: dict = {}  # per-loss arguments, e.g. {"f_ece": {"gamma": 2.0}}; empty: registry defaults
hard_classes: int = 3  # classes flagged hard: lowest mean recall and lowest mean AUC over the losses
model: str = "tiny_cnn"  # tiny_cnn | resnet18 | resnet50 | densenet121 (sigmoid head, one logit per class)
pretrained: bool = False  # ImageNet weights (downloaded once into torchvision's cache)
image_size: int = 0  # resize inputs to this side inside the model (0: native 8 or 32 px)
augment: bool = False  # random flips and shifts on the training split (keep off for digits)
epochs: int = 10  # training epochs per loss
batch_size: int = 64  # training batch size
optimizer: str = "adam"  # adamw | adam | sgd
lr: float = 0.003  # learning rate
weight_decay: float = 0.0001  # weight decay
scheduler: str = "cosine"  # none | cosine | step | plateau
grad_clip: float = 0.0  # max gradient norm (0: off)
early_stopping_patience: int = 0  # stop after this many epochs without improvement (0: off)
monitor: str = "val_auroc"  # validation quantity that picks the kept epoch: val_auroc | val_loss
amp: bool = True  # mixed precision and channels_last (CUDA only)
device: str = "auto"  # auto | cpu | cuda | mps
num_workers: int = 0  # DataLoader worker processes
num_threads: int = 1  # torch CPU threads (fixed so CPU runs repeat exactly; 0: torch default)
precision: str = "float64"  # float64 | float32: float64 keeps CPU results identical across AVX2 / AVX-512 (docs/reproducibility.md); float32 for GPUs
seed: int = 42  # seed for long tail, splits, initial weights and shuffling
run_dir: str = ""  # run folder (set by `lfakit run`); empty: a new results/cifar_fece/<time>-interactive
resume: bool = False  # continue the run in run_dir from its checkpoints''', "parameters"),
code("""P = lfakit.params.validate_notebook(X.EXPERIMENT, globals())
run_dir = X.setup(P)
print("data:", P["dataset"], "| ratios:", P["imbalance_ratios"], "| baseline:", P["baseline"])
for name, fn in X.loss_modules(P).items():
    print(f"{name:>6}: {fn}")"""),
md("## Data\nImages per class in each split. `train`/`val` are drawn from the long-tailed training set of each ratio (fold 1 with k-fold); the test set is the same balanced one for every ratio."),
code("""data = X.load_data(P)
print(report.format_table(X.split_summary(data)))"""),
md("## Training\nOne model per ratio (and fold) and loss, each from the same initial weights, data order and schedule. The best epoch (by `monitor` on validation) is kept."),
tagged("runs = X.train_all(P, data, run_dir)", "nbval-ignore-output"),
md("## Per-class results and the hard classes\nTest recall and AUC of every class for each loss (threshold chosen on validation). `hard` flags the classes with the lowest recall / AUC averaged over the losses; `n_train` is the class's training images."),
code("""ev = X.evaluate(P, runs, data)
tabs = X.tables(P, ev)
for rho in data.splits:
    print(f"=== rho = {rho} ===")
    print(report.format_table(tabs[f"hard_classes_rho{rho}"], decimals=3))"""),
md("""## Significance against the baseline
Per class, the test AUC of each loss minus the baseline's, with the two-sided **DeLong** p-value (`n.s.`: p ≥ 0.05); the `Mean` row is the mean per-class AUC with a stratified **paired bootstrap** p-value (1000 resamples). p-values are not adjusted for multiple comparisons. The full tables (CIs, winners) are in `tables/comparison_rho*.csv`."""),
code("""for rho in data.splits:
    print(f"=== rho = {rho} (baseline: {P['baseline']}) ===")
    key = f"significance_rho{rho}"
    print(report.format_table(tabs[key]) if key in tabs else "one loss only: nothing to compare")"""),
md("## LFA analysis\nFor every class, the distribution of each test (and training) image's predicted probability of its **own** class under each loss (hard classes in red), from the kept epoch (the best by `monitor` on validation, which need not be the last one): how each loss moved the hard classes. Then, on the long-tailed runs, per-class test recall against the class's number of training images. Per-class AUC bars and training curves follow."),
code("""figs = X.figures(P, ev, runs, data, tabs, run_dir)"""),
md("## Table 2\nLFA's Table-2 layout: for every ratio and loss, **mean ± std across classes** (unweighted) of the per-class test metrics; `threshold` is the validation-chosen threshold, `F0` equals `Precision` by definition, `miss` = FN/(TP+FN), `overflow` = FP/(TP+FP)."),
code("""print(report.format_table(tabs["table2"]))"""),
code("""written = X.save(P, run_dir, runs, ev, data, tabs)
print("\\n".join(written))"""),
]

write_notebook(cells, "notebooks/cifar_fece.ipynb")
