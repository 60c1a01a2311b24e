"""Runs an Experiment: the modes of run.py, as library functions.

`run(experiment)` is what `python run.py ...` does once its flags became an
Experiment: `prepare` (validate, check paths, build the strategy, read the
dataset and the checkpoint's architecture, resolve; nothing written), then
`train` (record the experiment in model_dir, train, export, evaluate) or
`evaluate_until_done` (--mode=eval). Notebooks and tests call the same
functions with an Experiment they build directly.
"""

import dataclasses
from typing import Optional

from absl import logging
import tensorflow as tf

from tf2.training import checkpoint_state
from tf2.data import color_augment
from tf2 import components
from tf2.data import pipeline as data_lib
from tf2.training import distillation
from tf2.evaluation import linear_head as evaluation
from tf2.config import experiment as experiment_lib
from tf2.runtime import fileio
from tf2.data import label_subset as label_subset_lib
from tf2.training import memory_buffer
from tf2.models import model as model_lib
from tf2.training import optimization
from tf2.runtime import precision
from tf2.config import preflight
from tf2.runtime import reproducibility
from tf2.config import resolve as resolve_lib
from tf2.runtime import run_lock
from tf2.training import schedule
from tf2.runtime import strategy as strategy_lib
from tf2.training import loop as train_loop
from tf2.training import step as training
from tf2.config import validation
from tf2.data.datasets import image_folder

LABEL_SUBSET_FILE = 'label_subset.json'


@dataclasses.dataclass
class Context:
  """A prepared run: the resolved experiment and what it runs on."""
  experiment: experiment_lib.Experiment
  strategy: tf.distribute.Strategy
  builder: object  # tfds.core.DatasetBuilder
  subset: Optional[label_subset_lib.LabelSubset]
  # One training input pipeline per replica (see data.build_distributed_
  # dataset); run.py keeps one per worker, as published.
  per_replica_pipelines: bool = False

  @property
  def chief(self):
    """Whether this process writes model_dir (one of a cluster's workers)."""
    return strategy_lib.is_chief(self.strategy)

  def scratch_dir(self):
    """Where a non-chief worker writes what it must save with the chief."""
    return fileio.join(self.experiment.run.model_dir,
                       f'{fileio.TMP_PREFIX}worker-'
                       f'{strategy_lib.worker_id(self.strategy)}')


def _label_subset(experiment, builder):
  """The run's labeled subset of --train_split, or None (all labeled).

  A run that already chose one (model_dir/label_subset.json, written by
  `train`) keeps it: a resumed run and --mode=eval use exactly the same
  labeled examples.
  """
  data = experiment.data
  if not (data.label_fraction or data.labels_per_class):
    return None
  path = fileio.join(experiment.run.model_dir, LABEL_SUBSET_FILE)
  if fileio.exists(path):
    return label_subset_lib.load_label_subset(path)
  return label_subset_lib.make_label_subset(
      builder, data.train_split, fraction=data.label_fraction or None,
      per_class=data.labels_per_class or None, seed=data.label_seed)


def prepare(experiment, strategy=None, per_replica_pipelines=False):
  """Validates and resolves; writes nothing in model_dir.

  The dataset is prepared in data_dir if it is the embedded one or an image
  folder (after validation, so bad settings never write there).

  Args:
    experiment: an Experiment.
    strategy: the strategy to run under (e.g. a notebook's or a test's);
      None builds the one the settings choose.
    per_replica_pipelines: see `Context`.

  Returns:
    Context.
  """
  validation.validate(experiment)
  preflight.check_paths(experiment)
  run = experiment.run
  if strategy is None:
    strategy = strategy_lib.build_strategy(
        run.use_tpu, run.tpu_name, run.tpu_zone, run.gcp_project, run.master,
        run.distribution_strategy or '', run.all_reduce_alg or '')
  if (run.jit_compile and strategy.num_replicas_in_sync > 1 and
      not training.whole_step_compilable(strategy)):
    raise validation.ConfigError(
        f'--jit_compile with {strategy.num_replicas_in_sync} CPU replicas: '
        'XLA cannot compile the collectives between CPU replicas; use one '
        'replica (the default on CPUs) or GPUs, or drop --jit_compile.')
  if (run.eval_knn and run.mode != 'train' and
      strategy_lib.is_multi_worker(strategy)):
    raise validation.ConfigError(
        '--eval_knn on several workers: the kNN memory would only hold each '
        "worker's share of the training split. Train without it, then run "
        '--mode=eval --eval_knn on one machine with the same --model_dir.')
  builder = data_lib.get_builder(experiment.data.dataset,
                                 experiment.data.data_dir)
  if image_folder.is_image_folder(experiment.data.dataset):
    logging.info('Image folder:\n%s', image_folder.describe(builder))
  start_from = (checkpoint_state.newest_complete_checkpoint(run.model_dir) or
                run.checkpoint)
  subset = _label_subset(experiment, builder)
  experiment = resolve_lib.resolve(
      experiment, builder, strategy.num_replicas_in_sync, subset,
      resolve_lib.architecture_of(start_from), start_from or '')
  resolved = experiment.resolved
  if resolved.architecture_from:
    adopted = {k: v for k, v in experiment.sources.items()
               if v.startswith('checkpoint')}
    if adopted:
      logging.info('Architecture from %s: %s', start_from,
                   {k: experiment.flat()[k] for k in adopted})
  if subset is not None:
    logging.info('Label subset of %s: %d labeled (%s per class), %d '
                 'unlabeled.', experiment.data.train_split,
                 subset.num_labeled, subset.labeled_per_class,
                 subset.num_unlabeled)
  logging.info('# train examples: %d, # train steps: %d, # eval examples: '
               '%d, # eval steps: %d, # classes: %d, replicas: %d',
               resolved.num_train_examples, resolved.train_steps,
               resolved.num_eval_examples, resolved.eval_steps,
               resolved.num_classes, resolved.num_replicas)
  return Context(experiment, strategy, builder, subset,
                 per_replica_pipelines)


def evaluate_checkpoint(context, model, checkpoint_path, global_step=None):
  """Evaluates one checkpoint (or the model at `global_step`), writes its
  results and exports it."""
  run = context.experiment.run
  return evaluation.evaluate_checkpoint(
      model, checkpoint_path, run.model_dir,
      components.evaluators(context, model),
      run.keep_hub_module_max,
      scratch_dir=None if context.chief else context.scratch_dir(),
      global_step=global_step)


def build_model(context):
  with context.strategy.scope():
    return model_lib.build_model(
        components.model_config(context.experiment))


def _final_step(experiment):
  """The step training ends at: its own record's, else the settings'."""
  steps = experiment.resolved.train_steps
  record = experiment_lib.load_record(experiment.run.model_dir)
  if record is not None and record[1]:
    steps = min(steps, record[1]['train_steps'])
  return steps


def evaluate_until_done(context):
  """--mode=eval: evaluates each new checkpoint until training's last one.

  Stops once a checkpoint at the step the training run ends at (from its
  experiment.json, re-read for every checkpoint) is evaluated, or after
  --eval_timeout seconds without a new checkpoint.

  Returns:
    The last results dict, or None if no checkpoint appeared in time.
  """
  run = context.experiment.run
  model = build_model(context)
  result = None
  for path in tf.train.checkpoints_iterator(run.model_dir, min_interval_secs=15,
                                            timeout=run.eval_timeout):
    result = evaluate_checkpoint(context, model, path)
    final = _final_step(context.experiment)
    if result['global_step'] >= final:
      logging.info('Eval complete at step %d (training ends at %d).',
                   result['global_step'], final)
      return result
  logging.warning('No new checkpoint in %s for %s s (--eval_timeout); '
                  'stopped waiting.', run.model_dir, run.eval_timeout)
  return result


def flags_record(experiment):
  """flags.json's content: every setting, plus the run's counts and steps."""
  resolved = experiment.resolved
  return dict(experiment.flat(),
              num_labeled_examples=resolved.num_labeled_examples,
              num_unlabeled_examples=resolved.num_unlabeled_examples,
              num_train_examples=resolved.num_train_examples,
              num_eval_examples=resolved.num_eval_examples,
              train_steps=resolved.train_steps)


def record_experiment(context):
  """Writes label_subset.json, experiment.json and flags.json in model_dir."""
  experiment = context.experiment
  model_dir = experiment.run.model_dir
  fileio.makedirs(model_dir)
  subset_path = fileio.join(model_dir, LABEL_SUBSET_FILE)
  if context.subset is not None and not fileio.exists(subset_path):
    label_subset_lib.save_label_subset(context.subset, subset_path)
  experiment_lib.save(experiment, model_dir)
  fileio.write_json_atomic(fileio.join(model_dir, 'flags.json'),
                           flags_record(experiment))


def train(context):
  """Trains (resuming from model_dir), then exports and evaluates.

  Holds model_dir's run lock throughout (`run_lock`): a second training run
  into the same model_dir stops at once. Temporaries that interrupted saves
  left behind are removed first.

  Returns:
    The eval results with --mode=train_then_eval, else the last train
    metrics.
  """
  model_dir = context.experiment.run.model_dir
  if not context.chief:
    # The chief holds the lock and records the run; a worker only trains.
    return _train_locked(context)
  with run_lock.RunLock(model_dir, log=logging.warning):
    removed = [path for folder in ('', 'saved_model', 'saved_model_ema')
               for path in fileio.remove_temporaries(
                   fileio.join(model_dir, folder))]
    if removed:
      logging.warning('Removed what interrupted saves left: %s', removed)
    record_experiment(context)
    return _train_locked(context)


def _train_locked(context):
  experiment, strategy = context.experiment, context.strategy
  run, data, resolved = experiment.run, experiment.data, experiment.resolved
  reproducibility.seed_run(run.seed, run.deterministic)
  model = build_model(context)
  with strategy.scope():
    dataset = components.train_dataset(context)
    teacher = None
    if run.train_mode == 'distill':
      teacher = distillation.load_teacher(
          run.teacher_checkpoint, experiment.model.image_size,
          resolved.num_classes, run.teacher_ft_proj_selector)
    optim = experiment.optimizer
    learning_rate = schedule.WarmUpAndCosineDecay(
        optim.learning_rate, resolved.num_train_examples,
        data.train_batch_size, optim.warmup_epochs, resolved.train_steps,
        optim.learning_rate_scaling)
    optimizer = precision.wrap_optimizer(optimization.build_optimizer(
        optim.optimizer, learning_rate, optim.momentum, optim.weight_decay,
        model=model), run.mixed_precision)
    memory = None
    if experiment.loss.memory_size:
      memory = memory_buffer.MemoryBuffer(
          model.config, experiment.loss.memory_size,
          model.config.proj_out_dim, experiment.loss.memory_ema_decay)
    state = checkpoint_state.CheckpointState(
        model, optimizer, run.model_dir, run.keep_checkpoint_max, memory,
        save_dir=None if context.chief else context.scratch_dir())
    logging.info(state.restore_or_initialize(
        run.checkpoint, use_ema=run.use_ema,
        zero_init_logits_layer=experiment.model.zero_init_logits_layer))

  augment_fn = None
  if data.augment_on_device:
    augment_fn = color_augment.make_augment_fn(data.color_jitter_strength,
                                               seed=run.seed)
  summary_writer = (tf.summary.create_file_writer(run.model_dir)
                    if context.chief else tf.summary.create_noop_writer())
  views = data.train_batch_size * (2 if run.train_mode == 'pretrain' else 1)
  metrics = train_loop.train(
      state, strategy, dataset, components.loss_config(experiment),
      resolved.train_steps, resolved.steps_per_loop, learning_rate,
      summary_writer, teacher=teacher, memory=memory, augment_fn=augment_fn,
      nan_policy=run.nan_policy, views_per_step=views,
      progress_interval_s=run.progress_interval_secs,
      jit_compile=run.jit_compile, seed=run.seed)
  logging.info('Training complete.')
  if memory is not None:
    ema_root = run.model_dir if context.chief else context.scratch_dir()
    ema_dir = fileio.join(ema_root, 'saved_model_ema',
                          str(int(state.global_step.numpy())))
    memory.export_ema_saved_model(ema_dir)
    if context.chief:
      logging.info('Moving-average model exported to %s.', ema_dir)
    else:
      fileio.rmtree(context.scratch_dir())
  if run.mode == 'train_then_eval':
    # A non-chief worker evaluates its model as trained (the chief's
    # checkpoint may still be being written).
    return evaluate_checkpoint(context, model, state.latest_checkpoint,
                               int(state.global_step.numpy()))
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
