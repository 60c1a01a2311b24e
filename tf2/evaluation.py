"""Evaluation of a checkpoint: metrics, summaries, result files, export.

Writes what the reference writes: eval summaries, `result.json` and
`result_<step>.json` in model_dir, then the SavedModel of that step.
"""

from absl import logging
import tensorflow as tf

from tf2 import checkpoint_io
from tf2 import export
from tf2 import fileio
from tf2 import metrics as metrics_lib
from tf2 import optimization


def evaluate(model, strategy, dataset, eval_steps, optimizer_name,
             weight_decay):
  """Top-1 / top-5 accuracy of the supervised head over `eval_steps` batches.

  Args:
    model: a Model with a supervised head.
    strategy: the strategy the dataset is distributed with.
    dataset: distributed eval dataset of (images, {'labels': one_hot}).
    eval_steps: number of batches; the dataset may end earlier.
    optimizer_name, weight_decay: for the reported regularization loss.

  Returns:
    {summary name: float}.
  """
  with strategy.scope():
    metrics = metrics_lib.eval_metrics()

  def step(images, labels):
    _, logits = model(images, training=False)
    regularization = optimization.weight_decay_loss(
        model.trainable_variables, weight_decay, optimizer_name)
    metrics_lib.update_eval(metrics, labels, logits, regularization)

  @tf.function
  def run_step(batch):
    images, labels = batch
    strategy.run(step, (images, labels['labels']))

  for i, batch in enumerate(dataset):
    if i >= eval_steps:
      break
    run_step(batch)
  return metrics_lib.results(metrics)


def write_results(model_dir, results, global_step):
  """Writes result.json and result_<step>.json, each atomically."""
  results = dict(results, global_step=int(global_step))
  values = {k: float(v) for k, v in results.items()}
  for name in ('result.json', f'result_{int(global_step)}.json'):
    fileio.write_json_atomic(fileio.join(model_dir, name), values)
  return results


def _report(results, model_dir, step):
  """Writes eval results as summaries in model_dir and logs them."""
  with tf.summary.create_file_writer(model_dir).as_default():
    for name, value in results.items():
      tf.summary.scalar(name, value, step=step)
  logging.info('Eval at step %d: %s', step, results)


def evaluate_checkpoint(model, strategy, dataset, eval_steps, checkpoint_path,
                        model_dir, optimizer_name, weight_decay,
                        keep_hub_module_max, run_eval=True,
                        extra_eval=None):
  """Restores `checkpoint_path`, evaluates, writes results and exports.

  Args:
    extra_eval: optional `fn(model) -> {name: float}` run after the restore
      (e.g. a kNN evaluation of the representation); its results are
      reported, summarised and written with the others.

  Returns:
    The results dict (with `global_step`).
  """
  checkpoint_io.verify_matches_model(model, checkpoint_path)
  global_step = tf.Variable(0, dtype=tf.int64)
  tf.train.Checkpoint(model=model, global_step=global_step).restore(
      checkpoint_path).expect_partial()
  step = int(global_step.numpy())
  results = {}
  if run_eval:
    results = evaluate(model, strategy, dataset, eval_steps, optimizer_name,
                       weight_decay)
    _report(results, model_dir, step)
  elif extra_eval is None:
    logging.info('No supervised head to evaluate (pretraining without linear '
                 'eval); exporting only.')
  if extra_eval is not None:
    extra = extra_eval(model)
    _report(extra, model_dir, step)
    results.update(extra)
  results = write_results(model_dir, results, step)
  export.export_step(model, model_dir, step, keep_hub_module_max)
  return results
