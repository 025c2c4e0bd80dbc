"""Training machinery: one jitted update, a resumable loop, checkpoints, logs.

The loop is generic over an ``update(state, data, key) -> (state, metrics)``
function with an explicit state pytree ``{'step', 'params', 'opt_state'}``:

* compiled once (`jax.jit` with the state donated), ``data`` passed as an
  argument so datasets are device buffers, not constants in the program;
* PRNG keys threaded explicitly: per step ``fold_in(rng, step)``, which makes a
  resumed run bitwise identical to an uninterrupted one (on CPU; tested by
  SIGKILLing ``train.py``);
* orbax checkpoints (atomic), resumed from the latest good one: a damaged
  latest checkpoint is skipped with a warning and removed, an interrupted
  save's temporary directory is cleaned up, and checkpoints of another config
  (other shapes) are refused with the differences named, never silently
  replaced by a fresh start;
* before the first step, `check_update` traces the update with
  `jax.eval_shape` and checks the data for NaN/inf, so shape and input errors
  are raised with the library's messages before anything is compiled;
* progress lines with step rate, TensorBoard scalars and a JSON-lines file per
  run in the work dir;
* a non-finite loss or gradient never updates the parameters and stops the run
  with the step and the last good checkpoint named;
* data larger than memory read one window at a time (`Windows`), the window
  a function of the step, so resume stays bitwise.

One module per concern:

* `updates`: `init_state`, `apply_gradients`, and the two updates every
  experiment needs, `classifier_update` (F on its task) and `lan_update` (A
  with F frozen, eq. 3);
* `loop`: `fit` and `check_update`;
* `checkpoints`: orbax managers, `restore_latest`, `load_state`;
* `logs`: `MetricLogger`, `read_metric`;
* `sharding`: `make_mesh`, `replicate`, `shard_batch`;
* `windows`: `Windows`, and `windows.from_source` over a random-access
  data source (``tfds.data_source``);
* `xla`: `compiler_options` and `jit` with them; `jit_hoisting_constants`.

Every name is re-exported here: ``from lanjax import training;
training.fit(...)``.
"""

from lanjax.training.checkpoints import (
    CheckpointError, CheckpointMismatchError, CheckpointSaveError,
    checkpoint_manager, load_state, restore_latest, save_state)
from lanjax.training.logs import MetricLogger, read_metric
from lanjax.training.loop import NonFiniteError, check_update, fit
from lanjax.training.sharding import (
    check_divisible, make_mesh, replicate, shard_batch)
from lanjax.training.updates import (
    State, apply_gradients, classifier_update, init_state, lan_update)
from lanjax.training import windows
from lanjax.training.windows import Windows
from lanjax.training.xla import (
    compiler_options, jit, jit_hoisting_constants, platform_of)
from lanjax.validation import check_lan_setup  # pylint: disable=unused-import

__all__ = [
    'CheckpointError', 'CheckpointMismatchError', 'CheckpointSaveError',
    'MetricLogger',
    'NonFiniteError', 'State', 'apply_gradients', 'check_divisible',
    'check_lan_setup', 'check_update', 'checkpoint_manager',
    'classifier_update', 'compiler_options', 'fit', 'init_state', 'jit',
    'lan_update', 'load_state', 'make_mesh', 'platform_of', 'read_metric',
    'replicate', 'restore_latest', 'save_state', 'shard_batch', 'Windows',
    'windows',
]
