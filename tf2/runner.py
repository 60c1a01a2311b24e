"""Runs an Experiment: the modes of run.py, as library functions.

`run(experiment)` is what `python run.py ...` does once its flags became an
Experiment: `prepare` (context.py: validate, check paths, build the
strategy, find and open the start checkpoint, read the dataset, resolve;
nothing written), then `train` (record the experiment, train, export, evaluate) or
`evaluate_until_done` (--mode=eval). Every piece is built by the Task
(`task.py`); this module only orders them. Notebooks and tests call the
same functions with an Experiment they build directly.
"""

from absl import logging
import tensorflow as tf

from tf2 import context as context_lib
from tf2 import task as task_lib
from tf2.config import experiment as experiment_lib
from tf2.evaluation import linear_head
from tf2.runtime import fileio
from tf2.runtime import model_dir as model_dir_lib
from tf2.runtime import precision
from tf2.runtime import preemption
from tf2.runtime import reproducibility
from tf2.runtime import run_lock
from tf2.runtime import strategy as strategy_lib
from tf2.training import loop


# The prepared run (context.py); `runner.prepare` as before.
Context = context_lib.Context
prepare = context_lib.prepare


def evaluate_checkpoint(context, model, checkpoint_path, global_step=None):
  """Evaluates one checkpoint (or the model at `global_step`), writes its
  results and exports it."""
  run = context.experiment.run
  return linear_head.evaluate_checkpoint(
      model, checkpoint_path, run.model_dir,
      task_lib.Task(context).build_evaluators(model), run.keep_hub_module_max,
      scratch_dir=None if context.chief else context.scratch_dir(),
      global_step=global_step)


def evaluate_until_done(context):
  """--mode=eval: evaluates each new checkpoint until training's last one.

  Stops once a checkpoint at the step the training run ends at (from its
  experiment.json, re-read for every checkpoint) is evaluated, or after
  --eval_timeout seconds without a new checkpoint.

  Returns:
    The last results dict, or None if no checkpoint appeared in time.
  """
  run = context.experiment.run
  model = task_lib.Task(context).build_model()
  result = None
  for path in tf.train.checkpoints_iterator(run.model_dir, min_interval_secs=15,
                                            timeout=run.eval_timeout):
    result = evaluate_checkpoint(context, model, path)
    final = experiment_lib.final_step(context.experiment)
    if result['global_step'] >= final:
      logging.info('Eval complete at step %d (training ends at %d).',
                   result['global_step'], final)
      return result
  logging.warning('No new checkpoint in %s for %s s (--eval_timeout); '
                  'stopped waiting.', run.model_dir, run.eval_timeout)
  return result


def train(context):
  """Trains (resuming from model_dir), then exports and evaluates.

  The chief holds model_dir's run lock throughout (`run_lock`): a second
  training run into the same model_dir stops at once. Temporaries that
  interrupted saves left behind are removed first. Until training ends,
  SIGTERM saves and stops (`preemption.Preempted`, the lock released).

  Returns:
    The eval results with --mode=train_then_eval, else the last train
    metrics.
  """
  model_dir = context.experiment.run.model_dir
  with preemption.Watcher() as watcher:
    if not context.chief:
      # The chief holds the lock and records the run; a worker only trains.
      return _train_locked(context, watcher)
    with run_lock.RunLock(model_dir, log=logging.warning):
      removed = [path for folder in ('', model_dir_lib.SAVED_MODEL,
                                     model_dir_lib.SAVED_MODEL_EMA)
                 for path in fileio.remove_temporaries(
                     model_dir_lib.path(model_dir, folder))]
      if removed:
        logging.warning('Removed what interrupted saves left: %s', removed)
      experiment_lib.record(context.experiment, context.subset)
      return _train_locked(context, watcher)


def _train_locked(context, watcher):
  """Builds the pieces (Task), runs the loop, exports, evaluates."""
  experiment, run = context.experiment, context.experiment.run
  reproducibility.seed_run(run.seed, run.deterministic)
  task = task_lib.Task(context)
  training = task.build_training()
  logging.info(training.restored)
  metrics = loop.train(
      training.state, context.strategy, training.step, training.metrics,
      training.dataset, experiment.resolved.train_steps,
      experiment.resolved.steps_per_loop, training.learning_rate,
      task.summary_writer(), nan_policy=run.nan_policy,
      views_per_step=task.views_per_step(),
      progress_interval_s=run.progress_interval_secs, preemption=watcher,
      agree_across_workers=strategy_lib.is_multi_worker(context.strategy),
      preemption_grace_s=run.preemption_grace_secs)
  watcher.uninstall()  # Training is saved: SIGTERM ends export and eval.
  logging.info('Training complete.')
  step = int(training.state.global_step.numpy())
  if training.memory is not None:
    root = run.model_dir if context.chief else context.scratch_dir()
    training.memory.export_ema_saved_model(
        model_dir_lib.export_dir(root, step, ema=True))
    if not context.chief:
      fileio.rmtree(context.scratch_dir())
  if run.mode == 'train_then_eval':
    # A non-chief worker evaluates its model as trained (the chief's
    # checkpoint may still be being written).
    return evaluate_checkpoint(context, training.model,
                               training.state.latest_checkpoint, step)
  return metrics


def run(experiment):
  """Runs `experiment` in its --mode; see the module docstring.

  Every model is built under the experiment's precision policy (tf_keras's
  global policy, restored afterwards).
  """
  with precision.policy(experiment.run.mixed_precision):
    context = prepare(experiment)
    if context.experiment.run.mode == 'eval':
      return evaluate_until_done(context)
    return train(context)
