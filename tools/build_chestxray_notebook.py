"""One-off: write notebooks/chestxray_zlpr.ipynb's cells (outputs come from `make notebooks`)."""
from _nb import code, md, tagged, write_notebook

cells = [
md("""# ChestX-ray14: focal loss vs ZLPR / FZLPR (+ BCE, ASL)

Reproduces seed `000` (CLAHE DenseNet-121, FocalLoss baseline vs ZLPR): per-class AUROC, F1 and
threshold for every loss, an overall table, and per-class AUROC deltas against a baseline with a
**DeLong test for every class** (a paired bootstrap CI for the mean), so each "winner" says
whether it is significant.

* **Smoke profile** (the defaults below): a small data set written in the exact NIH ChestX-ray14
  layout (`Data_Entry_2017.csv`, split lists, `images_001/images/*.png`) and read by the real
  loader; a tiny CNN at 64 px on CPU. Its numbers show that the pipeline works, not how the
  losses compare on real radiographs.
* **Paper profile** (`lfakit run chestxray_zlpr --profile paper`): DenseNet-121 with ImageNet
  weights, 224 px, CLAHE, 25 epochs, batch 8, AdamW (wd 1e-5), seed 42, losses focal (α=None, γ=2),
  ZLPR and FZLPR, on the NIH data set at `data_dir`.
* FZLPR's temperature τ=0.2 comes from public implementations; the FZLPR paper's own value was not
  available. Set it with `loss_kwargs={"fzlpr": {"tau": ...}}`.
* Thresholds are chosen per class on the **validation** split (best F1) and F1 is reported on
  **test**. Validation is carved from `train_val_list.txt` by patient; no patient is in two splits.
"""),
code("""import matplotlib.pyplot as plt

import lfakit.params
from lfakit import report
from lfakit.experiments import chestxray_zlpr as X"""),
tagged('''data_dir: str = ""  # NIH ChestX-ray14 root (Data_Entry_2017.csv, train_val_list.txt, test_list.txt, images*/); empty: the embedded default
cache_dir: str = ""  # pre-resized image caches and the embedded data set; empty: $LFAKIT_CACHE or ~/.cache/lfakit
synthetic_patients: int = 240  # patients in the embedded default data set (ignored with data_dir)
max_images: int = 0  # use at most this many images, sampled by patient (0: all)
val_fraction: float = 0.1  # share of train_val patients held out for validation
image_size: int = 64  # model input side in pixels (images are resized once into the cache)
clahe_clip: float = 2.0  # CLAHE clip limit, applied on uint8 before resizing (0: no CLAHE)
clahe_grid: int = 8  # CLAHE tile grid (n x n)
losses: list = ["focal", "zlpr", "fzlpr", "bce", "asl"]  # losses to train, by registry name
baseline: str = "focal"  # loss every other loss is compared against
loss_kwargs: dict = {}  # per-loss arguments, e.g. {"fzlpr": {"tau": 0.2}}; empty: registry defaults
model: str = "tiny_cnn"  # tiny_cnn | densenet121 | resnet18 | resnet50
pretrained: bool = False  # ImageNet weights (downloaded once into torchvision's cache)
augment: bool = False  # random flips and shifts on the training split
epochs: int = 10  # training epochs per loss
batch_size: int = 32  # training batch size
optimizer: str = "adamw"  # adamw | adam | sgd
lr: float = 0.003  # learning rate
weight_decay: float = 1e-05  # weight decay
scheduler: str = "cosine"  # none | cosine | step | plateau
grad_clip: float = 0.0  # max gradient norm (0: off)
early_stopping_patience: int = 0  # stop after this many epochs without improvement (0: off)
monitor: str = "val_auroc"  # validation quantity that picks the best epoch: val_auroc | val_loss
amp: bool = True  # mixed precision and channels_last (CUDA only)
device: str = "auto"  # auto | cpu | cuda | mps
num_workers: int = 0  # DataLoader worker processes
num_threads: int = 2  # torch CPU threads (fixed so CPU runs repeat exactly)
precision: str = "float64"  # float64 | float32: float64 keeps CPU results identical across AVX2 / AVX-512 (docs/reproducibility.md); float32 for GPUs
seed: int = 42  # seed for data split, initial weights and shuffling
run_dir: str = ""  # run folder (set by `lfakit run`); empty: a new results/chestxray_zlpr/<time>-interactive
resume: bool = False  # continue the run in run_dir from its checkpoints''', "parameters"),
code("""P = lfakit.params.validate_notebook(X.EXPERIMENT, globals())
run_dir = X.setup(P)
print("baseline:", P["baseline"])
for name, fn in X.loss_modules(P).items():
    print(f"{name:>6}: {fn}")"""),
md("## Data\nImages are decoded, converted to 8-bit grayscale, CLAHE-enhanced and resized **once** into a uint8 cache keyed on those settings."),
tagged("splits = X.load_data(P)", "nbval-ignore-output"),
code("print(X.split_summary(splits).to_string())"),
md("## Training\nOne model per loss, each from the same initial weights, data order and schedule. The best epoch (by `monitor` on validation) is kept."),
tagged("runs = X.train_all(P, splits, run_dir)", "nbval-ignore-output"),
md("## Results\nTraining curves, ROC curves and per-class AUROC bars are saved under `figures/` and shown at the end. Per-class metrics on the test split (threshold chosen on validation), for each loss:"),
code("""ev = X.evaluate(P, runs, splits)
tables = X.tables(P, ev)
for name in P["losses"]:
    print(f"=== {name} ===")
    print(report.format_table(tables[f"per_class_{name}"]))"""),
code("""print(report.format_table(tables["overall"]))"""),
md("Per-class AUROC against the baseline. `p` is the two-sided DeLong test of the paired AUROCs; a winner marked `(n.s.)` is not significant at 0.05. The `Mean` row's interval is a paired bootstrap 95% CI."),
code("""print(report.format_table(tables["comparison"]) if "comparison" in tables else "one loss only: nothing to compare")"""),
code("""figs = X.figures(P, ev, runs, run_dir)"""),
code("""written = X.save(P, run_dir, runs, ev, splits, tables)
print("\\n".join(written))"""),
]

write_notebook(cells, "notebooks/chestxray_zlpr.ipynb")
