r"""Training: optax train steps, per-example SGD epochs, evaluation, checkpoints, the fit loop.

One module per concept, every public name re-exported here:

- `jaxcnn.train.steps` — `make_train_step` (any optax optimizer, buffers donated, data-parallel
  over a `data_mesh`), `make_sgd_epoch` (LeCun et al. 1989's per-example SGD as one jitted
  ``lax.scan``), `evaluate` (mean loss and error rate), `epoch_permutation`, `data_mesh`,
  `replicate`, `shard_batch`.
- `jaxcnn.train.checkpoints` — `save_checkpoint` / `load_checkpoint`: ``.npz`` of the leaves keyed
  by tree path plus JSON metadata, written atomically (`atomic_write`), no pickle, validated
  against a template on load.
- `jaxcnn.train.loop` — `fit`: epochs with a `Progress` hook, per-epoch history, a checkpoint
  after every epoch, exact resume, and `NonFiniteLossError` when a loss becomes NaN or infinite.

``apply_fn(params, x) -> y`` is a model's apply with its ``ops`` bound (for a `jaxcnn.models.Model`
use ``model.apply`` or ``functools.partial(model.apply, ops=jaxcnn.reference)``);
``loss_fn(y, targets) -> scalar`` is e.g. `jaxcnn.squared_error` or `jaxcnn.softmax_cross_entropy`.
Reporting (tables, plots, machine info, tqdm bars) lives beside the experiments, in
``experiments/_report.py``.
"""

from jaxcnn._io import atomic_write
from jaxcnn.train.checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from jaxcnn.train.loop import FitResult, NonFiniteLossError, PrintProgress, Progress, epoch_summary, fit
from jaxcnn.train.steps import (
    Evaluation,
    data_mesh,
    epoch_permutation,
    evaluate,
    make_sgd_epoch,
    make_train_step,
    replicate,
    shard_batch,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "Evaluation",
    "FitResult",
    "NonFiniteLossError",
    "PrintProgress",
    "Progress",
    "atomic_write",
    "data_mesh",
    "epoch_permutation",
    "epoch_summary",
    "evaluate",
    "fit",
    "load_checkpoint",
    "make_sgd_epoch",
    "make_train_step",
    "replicate",
    "save_checkpoint",
    "shard_batch",
]
