"""A prepared run: the experiment resolved against its strategy, data and start.

`prepare(experiment)` does everything a run needs before it may write: it
validates the settings, checks the paths, builds the strategy and checks
the rules of its replicas, prepares the dataset (the embedded one or an
image folder, into data_dir), finds and opens the checkpoint the run starts
from (once: `checkpoints/start.py`), chooses the label subset and resolves
counts, steps and the checkpoint's architecture. The `Context` it returns
carries all of it to the Task and the runner.
"""

import dataclasses
import os
from typing import Optional

from absl import logging
import tensorflow as tf

from tf2.checkpoints import architecture
from tf2.checkpoints import start as start_lib
from tf2.config import experiment as experiment_lib
from tf2.config import preflight
from tf2.config import resolve as resolve_lib
from tf2.config import validation
from tf2.data import label_subset as label_subset_lib
from tf2.data import pipeline as data_lib
from tf2.data.datasets import image_folder
from tf2.runtime import fileio
from tf2.runtime import strategy as strategy_lib
from tf2.training import distillation
from tf2.training import step as step_lib


@dataclasses.dataclass
class Context:
  """A prepared run: the resolved experiment and what it runs on."""
  experiment: experiment_lib.Experiment
  strategy: tf.distribute.Strategy
  builder: object  # tfds.core.DatasetBuilder
  subset: Optional[label_subset_lib.LabelSubset]
  # The checkpoint the run starts from, opened once (checkpoints/start.py).
  start: start_lib.StartCheckpoint = start_lib.StartCheckpoint()
  # One training input pipeline per replica (see data.build_distributed_
  # dataset); run.py keeps one per worker, as published.
  per_replica_pipelines: bool = False
  # The --teacher_checkpoint of a distillation, opened and checked.
  teacher: Optional[object] = None  # checkpoint_files.OpenedCheckpoint

  @property
  def chief(self):
    """Whether this process writes model_dir (one of a cluster's workers)."""
    return strategy_lib.is_chief(self.strategy)

  def scratch_dir(self):
    """Where a non-chief worker writes what it must save with the chief."""
    return fileio.join(self.experiment.run.model_dir,
                       f'{fileio.TMP_PREFIX}worker-'
                       f'{strategy_lib.worker_id(self.strategy)}')


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
  if strategy is None:  # TensorFlow will read TF_CONFIG to build it.
    validation.validate_cluster(os.environ.get('TF_CONFIG'))
  preflight.check_paths(experiment)
  run = experiment.run
  if strategy is None:
    strategy = strategy_lib.build_strategy(
        run.use_tpu, run.tpu_name, run.tpu_zone, run.gcp_project, run.master,
        run.distribution_strategy or '', run.all_reduce_alg or '',
        run.cluster_wait_secs)
  validation.validate_replicas(
      experiment, strategy.num_replicas_in_sync,
      multi_worker=strategy_lib.is_multi_worker(strategy),
      xla_collectives=step_lib.whole_step_compilable(strategy))
  builder = data_lib.get_builder(experiment.data.dataset,
                                 experiment.data.data_dir)
  if image_folder.is_image_folder(experiment.data.dataset):
    logging.info('Image folder:\n%s', image_folder.describe(builder))
  start = start_lib.find_start(run.model_dir, run.checkpoint)
  subset = resolve_lib.label_subset(experiment, builder)
  experiment = resolve_lib.resolve(
      experiment, builder, strategy.num_replicas_in_sync, subset,
      start.checkpoint and architecture.infer_architecture(start.checkpoint),
      start.path or '')
  teacher = None
  if run.train_mode == 'distill' and run.mode != 'eval':
    teacher = distillation.open_teacher(run.teacher_checkpoint,
                                        experiment.resolved.num_classes)
  _log_prepared(experiment, start, subset)
  return Context(experiment, strategy, builder, subset, start,
                 per_replica_pipelines, teacher)


def _log_prepared(experiment, start, subset):
  resolved = experiment.resolved
  adopted = [k for k, v in experiment.sources.items()
             if v.startswith('checkpoint')]
  if adopted:
    logging.info('Architecture from %s: %s', start.path,
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
