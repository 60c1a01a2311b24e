"""Evaluation of a checkpoint: metrics, summaries, result files, export.

Writes what the reference writes: eval summaries, `result.json` and
`result_<step>.json` in model_dir, then the SavedModel of that step. What
is measured is a list of evaluators, each `fn(model) -> {name: value}`
(the linear head's accuracy, `evaluate`; a kNN classifier, `knn.py`), so
adding a measurement adds an entry, not a branch (big_vision's evaluators).
"""

from absl import logging
import tensorflow as tf

from tf2.checkpoints import export
from tf2.checkpoints import restore as checkpoint_restore
from tf2.runtime import fileio
from tf2.runtime import model_dir as model_dir_lib
from tf2.training import metrics as metrics_lib
from tf2.training import optimization


class EmptyEvalError(ValueError):
  """An evaluation saw no example; nothing is written."""


def evaluate(model, strategy, dataset, eval_steps, optimizer_name,
             weight_decay, jit_compile=False):
  """Top-1 / top-5 accuracy of the supervised head over `eval_steps` batches.

  Args:
    model: a Model with a supervised head.
    strategy: the strategy the dataset is distributed with.
    dataset: distributed eval dataset of (images, {'labels': one_hot}).
    eval_steps: number of batches; the dataset may end earlier.
    optimizer_name, weight_decay: for the reported regularization loss.
    jit_compile: compile each replica's forward pass with XLA (eval runs
      no collective: batch norm uses its moving statistics).

  Returns:
    {summary name: float}.
  """
  with strategy.scope():
    metrics = metrics_lib.eval_metrics()

  def step(images, labels):
    _, logits = model(images, training=False)
    regularization = optimization.weight_decay_loss(
        model, weight_decay, optimizer_name)
    metrics_lib.update_eval(metrics, labels, logits, regularization)

  if jit_compile:
    step = tf.function(step, jit_compile=True)

  @tf.function
  def run_step(batch):
    images, labels = batch
    strategy.run(step, (images, labels['labels']))

  batches = 0
  for batch in dataset:
    if batches >= eval_steps:
      break
    run_step(batch)
    batches += 1
  if not batches:
    raise EmptyEvalError('The evaluation split yielded no batch, so there is '
                         'nothing to measure (and result.json is left as it '
                         'is): check --eval_split and --eval_steps.')
  return metrics_lib.results(metrics)


def write_results(model_dir, results, global_step):
  """Writes result.json and result_<step>.json, each atomically."""
  results = dict(results, global_step=int(global_step))
  values = {k: float(v) for k, v in results.items()}
  for name in (model_dir_lib.RESULT, model_dir_lib.result_name(global_step)):
    fileio.write_json_atomic(model_dir_lib.path(model_dir, name), values)
  return results


def _report(results, model_dir, step):
  """Writes eval results as summaries in model_dir and logs them."""
  with tf.summary.create_file_writer(model_dir).as_default():
    for name, value in results.items():
      tf.summary.scalar(name, value, step=step)
  logging.info('Eval at step %d: %s', step, results)


def evaluate_checkpoint(model, checkpoint_path, model_dir, evaluators,
                        keep_hub_module_max, scratch_dir=None,
                        global_step=None):
  """Restores `checkpoint_path`, evaluates, writes results and exports.

  Every evaluator runs before anything is written, so a failed evaluation
  leaves result.json as it was.

  Args:
    model: the built Model to restore into.
    checkpoint_path: a checkpoint of that model, or None to evaluate the
      model as it is (at `global_step`).
    model_dir: where summaries, result files and the SavedModel go.
    evaluators: `fn(model) -> {name: float}` each (e.g. `evaluate`'s
      linear-head accuracy, a kNN evaluation of the representation); none
      for a model with nothing to measure (it is exported only).
    keep_hub_module_max: exports kept (0: all).
    scratch_dir: on a cluster's non-chief worker, where it exports (every
      worker must take part; the folder is removed after); it writes no
      result or summary.

  Returns:
    The results dict (with `global_step`).
  """
  if checkpoint_path is None:
    step = int(global_step)
  else:
    checkpoint_restore.verify_matches_model(model, checkpoint_path)
    saved_step = tf.Variable(0, dtype=tf.int64)
    tf.train.Checkpoint(model=model, global_step=saved_step).restore(
        checkpoint_path).expect_partial()
    step = int(saved_step.numpy())
  measured = [evaluator(model) for evaluator in evaluators]
  if not measured:
    logging.info('Nothing to evaluate (pretraining without linear eval or '
                 'kNN); exporting only.')
  results = {}
  for part in measured:
    results.update(part)
  if scratch_dir is not None:
    export.export_saved_model(
        model, model_dir_lib.path(scratch_dir, model_dir_lib.SAVED_MODEL))
    fileio.rmtree(scratch_dir)
    return dict(results, global_step=step)
  for part in measured:
    _report(part, model_dir, step)
  results = write_results(model_dir, results, step)
  export.export_step(model, model_dir, step, keep_hub_module_max)
  return results
