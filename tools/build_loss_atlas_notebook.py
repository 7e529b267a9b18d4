"""One-off: write notebooks/loss_atlas.ipynb's cells (outputs come from `make notebooks`)."""
from _nb import code, md, tagged, write_notebook

cells = [
md("""# Loss atlas: how each loss weighs easy and hard examples

The gradient–probability view of the Loss Function Assessment (LFA) work (seed `003`, whose README
lacks its "Figure 2"), drawn for **every loss in `lfakit.losses`**: the loss and its gradient as a
function of $p_t$, the probability the model gives the true class. Small $p_t$ is a hard
(misclassified) example, $p_t$ near 1 an easy one. No training: a CPU run takes well under a
minute, most of it drawing the figures.

* Everything is computed with autograd **through the modules that
  `lfakit.losses.build(name, **loss_kwargs[name])` returns**; no formula is re-implemented, so the
  curves show what the registry builds, with its defaults, clamps and detached weights. Change a
  default and the checked tables below change.
* Lower panels show $w = -\\partial L/\\partial s$, with $s$ the logit of the true class (the other
  logits fixed). It is the gradient magnitude $|\\partial L/\\partial s|$ wherever the loss falls as
  $p_t$ rises: every loss here except `flooding` below its level $b$, where $w<0$ (gradient
  ascent). BCE and CE give $w = 1-p_t = |p-y|$. The overview figure adds
  $|\\partial L/\\partial p_t| = |w|/(p_t(1-p_t))$, the derivative probability-defined losses are
  usually drawn with. Derivatives below $10^{-12}$ in magnitude are shown as 0 (rounding noise).
* **Constructions** (printed below with the actual numbers). *Multi-label*: one sample of C labels;
  label 0 varies, positives ($y=1$, $z=\\mathrm{logit}\\,p_t$) and negatives ($y=0$,
  $z=-\\mathrm{logit}\\,p_t$) are drawn separately; the other labels are fixed and correct.
  Element-wise losses use label 0's own term only; for the set-wise ZLPR family the whole sample
  counts, so the fixed labels matter. *Multi-class*: K logits, the true-class logit varies, the
  others are 0, so $p_t$ is its softmax probability. *IQA*: pairwise and point-wise losses on one
  pair with MOS $q_i > q_j$ against the predicted difference $x=\\hat y_i-\\hat y_j$; set-wise losses
  on a small batch where only the best image's prediction moves; lower panels show
  $-\\partial L/\\partial \\hat y$ of the moving prediction.
* Tables give $w$ at $p_t$ = 0.05 / 0.3 / 0.5 / 0.8 / 0.95, as the CF-Ensemble seed (`001`) does for
  focal loss: absolute, relative to the same loss at $p_t=0.5$, and relative to BCE / CE (registry
  defaults) at the same $p_t$.
* `interactive=True` (in JupyterLab) adds sliders for γ (focal, focal_ce, f_ece; γ− and γ+ of asl),
  τ (fzlpr, logit_norm) and q (gce). papermill and nbval run the default `False`: static figures.
"""),
code("""from IPython.display import display

import lfakit.params
from lfakit import report
from lfakit.experiments import loss_atlas as X"""),
tagged('''tasks: list = ["multilabel", "multiclass", "iqa"]  # task families to draw: multilabel, multiclass, iqa
losses: list = []  # losses to draw, by registry name; empty: every registered loss of the chosen tasks
loss_kwargs: dict = {}  # per-loss arguments, e.g. {"focal": {"gamma": 1.0}}; empty: registry defaults
grid_size: int = 199  # points on the p_t grid and on the IQA x grid
pt_min: float = 0.001  # smallest p_t drawn
pt_max: float = 0.999  # largest p_t drawn
table_pt: list = [0.05, 0.3, 0.5, 0.8, 0.95]  # p_t values of the gradient-weight tables
num_classes: int = 10  # K of the multi-class construction
multiclass_other_logit: float = 0.0  # logit of the K-1 other classes (the true-class logit varies)
setwise_labels: int = 14  # C of the multi-label sample (matters for the set-wise ZLPR family)
setwise_positives: int = 2  # how many of the C-1 fixed labels are positive (the rest negative)
setwise_other_pt: float = 0.9  # p_t of every fixed label (all correctly predicted)
iqa_range: float = 3.0  # IQA curves span x from -iqa_range to iqa_range
table_x: list = [-1.5, -0.5, 0.5, 1.5]  # x values of the IQA table
interactive: bool = False  # sliders for gamma, tau and q in JupyterLab; False (papermill, nbval): static figures
device: str = "cpu"  # unused: the atlas always computes on the CPU in float64
num_threads: int = 1  # torch CPU threads
seed: int = 42  # nothing here is random; kept for the common run interface
run_dir: str = ""  # run folder (set by `lfakit run`); empty: a new results/loss_atlas/<time>-interactive
resume: bool = False  # nothing to resume: a run recomputes everything in seconds''', "parameters"),
code("""P = lfakit.params.validate_notebook(X.EXPERIMENT, globals())
run_dir = X.setup(P)
for name, fn in X.loss_modules(P).items():
    print(f"{name:>12}: {fn}")"""),
md("## The curves\nEvery drawn loss, evaluated on the grid (and at the table points) with the constructions below."),
code("""A = X.compute(P)
for view, text in A.construction.describe().items():
    print(f"{view}: {text}")
print()
print(report.format_table(X.summary(A)))"""),
md("""### Multi-label: positives (y=1) and negatives (y=0)
Columns are losses, rows are the loss and $w=-\\partial L/\\partial s$ for positives, then for
negatives; dashed grey is BCE. Points to look for: `exp_ce` (LFA's "ECE") grows like
$(1-p_t)/p_t$ on hard examples, far above BCE; `f_ece` is `exp_ce` on positives and focal on
negatives; `asl`'s negatives get no gradient once $p = 1-p_t$ falls below its margin $m=0.05$, and
its focusing weights are detached (the authors' default), so on positives its $w$ is
$(1-p_t)^{\\gamma_+}$ times BCE's; `fzlpr` with τ=0.2 acts almost like a hinge: $w \\approx 1/τ = 5$
on clearly wrong labels ($p_t \\le 0.3$), $1/(2τ)$ at $p_t = 0.5$ and almost 0 from $p_t \\approx 0.7$
on. For the ZLPR family the loss includes the fixed labels' constant share."""),
code("""X.show(P, A, "multilabel", run_dir)"""),
md("""### Multi-class (K logits, the true class varying, the others at 0)
Dashed grey is CE. `flooding` (a batch of one sample here) equals CE until the loss falls below
$b$, then $w$ flips sign. `logit_norm` and `logit_clip` see the direction of the logit vector,
and along this construction the direction is fixed ($\\pm e_0$): LogitClip is CE while
$\\|z\\| \\le \\delta$ and flat beyond, LogitNorm is a step at $p_t = 1/K$ (where $s$ changes sign) and
flat elsewhere. Set `multiclass_other_logit` to a non-zero value to give them a direction to
change."""),
code("""X.show(P, A, "multiclass", run_dir)"""),
md("""### IQA: loss and $-\\partial L/\\partial \\hat y$ of the moving prediction
Top block: one pair with $q_i - q_j = 1$, against the predicted difference $x$. Bottom block: the
set-wise losses on a batch with MOS 1…5 where the best image is predicted at $5 + x$."""),
code("""X.show(P, A, "iqa", run_dir)"""),
md("### Overview: every classification loss on a log scale\nTop: $|\\partial L/\\partial s|$; bottom: $|\\partial L/\\partial p_t|$ along the same path."),
code("""X.show(P, A, "overview", run_dir)"""),
md("""## Gradient weight at selected $p_t$
$w = -\\partial L/\\partial s$ at each $p_t$ (columns). Rows are (view, loss)."""),
code("""tabs = X.tables(P, A)
print(report.format_table(tabs["gradient_weight"]))"""),
md("Relative to the same loss's weight at $p_t = 0.5$ (nan where that weight is 0):"),
code("""print(report.format_table(tabs["relative_to_p05"]))"""),
md("""### Focal loss against seed 001's table
Seed `001` lists the modulating factor $(1-p_t)^\\gamma$ as focal loss's gradient weight relative
to BCE. That holds when the factor is a constant weight on BCE's gradient, as its trainers apply
it (and as `asl` does with its default `detach_focusing=True`). Differentiating the focal loss
itself (`build("focal")`, as torchvision and Lin et al.) adds a term
$-\\gamma p_t (1-p_t)^{\\gamma-1}\\ln p_t$ to the ratio, so every example keeps more gradient than the
factor alone says: about 3× more at $p_t$ = 0.8–0.95, and at $p_t = 0.3$ focal's gradient is
practically BCE's:"""),
code("""if "focal_vs_seed001" in tabs:
    print(report.format_table(tabs["focal_vs_seed001"]))"""),
md("IQA: $-\\partial L/\\partial \\hat y$ of the moving prediction at selected $x$ (positive: a gradient step raises it)."),
code("""if "iqa_pull" in tabs:
    print(report.format_table(tabs["iqa_pull"]))"""),
md("""## Relative gradient weight (the atlas's metrics table)
$w(p_t)/w_{ref}(p_t)$: each loss's gradient weight divided by that of BCE (multi-label views) or CE
(multi-class), built with registry defaults, at the same $p_t$."""),
code("""print(report.format_table(tabs["relative_to_reference"]))"""),
md("""## Sliders
With `interactive=True` in JupyterLab: γ, τ and q for the losses that have them, redrawn against
BCE / CE."""),
code("""panel = X.explorer(P)
if panel is None:
    print("interactive is False: static figures only (set it to True in JupyterLab for sliders)")
else:
    display(panel)"""),
code("""written = X.save(P, run_dir, A, tabs)
print("\\n".join(written))"""),
]

write_notebook(cells, "notebooks/loss_atlas.ipynb")
