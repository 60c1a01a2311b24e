"""The Task: every piece an experiment describes, built in one place.

run.py's settings are flag-level (`config/experiment.py`); the library takes
plain arguments and configs. This module is the one translation (Model
Garden's `projects/simclr/tasks/simclr.py` is the model): `Task(context)`
builds, for a prepared run (`runner.prepare`), the model, its input
pipelines, the learning-rate schedule, the optimizer with its precision
wrapper, the memory buffer, the teacher, the checkpoint state restored from
the run's start checkpoint, the augmentation, the train step and its
metrics, and the evaluators. The runner only orders prepare, train, export
and evaluate; the loop (`training/loop.py`) only runs the built step.
"""

import dataclasses
from typing import Optional

import tensorflow as tf

from tf2.data import color_augment
from tf2.data import pipeline as data_lib
from tf2.evaluation import knn
from tf2.evaluation import linear_head
from tf2.evaluation import linear_probe
from tf2.models import config as config_lib
from tf2.models import model as model_lib
from tf2.runtime import precision
from tf2.training import checkpoint_state
from tf2.training import distillation
from tf2.training import memory_buffer
from tf2.training import optimization
from tf2.training import schedule
from tf2.training import step as step_lib


def model_config(experiment):
  """The library's ModelConfig of an experiment."""
  model, run = experiment.model, experiment.run
  return config_lib.ModelConfig(
      num_classes=experiment.resolved.num_classes,
      resnet_depth=model.resnet_depth,
      width_multiplier=model.width_multiplier, sk_ratio=model.sk_ratio,
      se_ratio=model.se_ratio, image_size=model.image_size,
      batch_norm_decay=model.batch_norm_decay,
      # With one replica, local statistics are global ones; the plain layer
      # is faster (fused kernel) and writes the same checkpoint keys.
      global_bn=model.global_bn and experiment.resolved.num_replicas > 1,
      # A student is trained as in fine-tuning: one view, supervised head.
      train_mode='pretrain' if run.train_mode == 'pretrain' else 'finetune',
      fine_tune_after_block=model.fine_tune_after_block,
      proj_head_mode=model.proj_head_mode,
      num_proj_layers=model.num_proj_layers, proj_out_dim=model.proj_out_dim,
      ft_proj_selector=config_lib.projection_layer(model.ft_proj_selector,
                                                   model.num_proj_layers),
      lineareval_while_pretraining=model.lineareval_while_pretraining,
      use_blur=experiment.data.use_blur,
      recompute_blocks=model.recompute_blocks)


def loss_config(experiment):
  """The train step's LossConfig of an experiment."""
  loss, optimizer = experiment.loss, experiment.optimizer
  return step_lib.LossConfig(
      train_mode=experiment.run.train_mode,
      lineareval_while_pretraining=(
          experiment.model.lineareval_while_pretraining),
      temperature=loss.temperature, hidden_norm=loss.hidden_norm,
      optimizer=optimizer.optimizer, weight_decay=optimizer.weight_decay,
      distillation_temperature=loss.distillation_temperature,
      label_loss_weight=loss.label_loss_weight)


def input_kwargs(experiment, split, subset=None):
  """build_input_fn arguments; a label subset marks (or keeps) its examples.

  Fine-tuning reads the labeled examples only; pretraining (linear eval)
  and distillation read the whole split and use labels where marked.
  """
  data, train_mode = experiment.data, experiment.run.train_mode
  return dict(split=split, image_size=experiment.model.image_size,
              train_mode=train_mode, cache_dataset=data.cache_dataset,
              color_jitter_strength=data.color_jitter_strength,
              labeled_ids=None if subset is None else subset.labeled_ids,
              labeled_only=train_mode == 'finetune',
              augment_on_device=data.augment_on_device)


@dataclasses.dataclass
class Training:
  """The built pieces of a training run (see `Task.build_training`)."""
  state: checkpoint_state.CheckpointState
  step: object  # step(images, labels, labeled) on each replica
  metrics: dict
  dataset: object  # distributed dataset, or dataset(start_step) if seeded
  learning_rate: schedule.WarmUpAndCosineDecay
  memory: Optional[memory_buffer.MemoryBuffer]
  restored: str  # where the weights came from, for the log

  @property
  def model(self):
    return self.state.model


class Task:
  """Builds the pieces of a prepared run (`runner.Context`)."""

  def __init__(self, context):
    self.context = context
    self.experiment = context.experiment
    self.strategy = context.strategy

  def build_model(self):
    with self.strategy.scope():
      return model_lib.build_model(model_config(self.experiment))

  def build_dataset(self, batch_size, is_training, split, **overrides):
    """A distributed dataset of the run's builder."""
    return data_lib.build_distributed_dataset(
        self.context.builder, batch_size, is_training, self.strategy,
        **dict(input_kwargs(self.experiment, split, self.context.subset),
               **overrides))

  def build_train_dataset(self):
    """The distributed train dataset; with --seed, `dataset(start_step,
    skip_steps)`.

    A seeded run's data order is a function of the step: the loop rebuilds
    its pipeline from every checkpoint's step (reproducibility.py).
    """
    data, seed = self.experiment.data, self.experiment.run.seed

    def from_step(start_step=0, skip_steps=0):
      return self.build_dataset(
          data.train_batch_size, True, data.train_split,
          per_replica_pipelines=self.context.per_replica_pipelines,
          seed=seed, start_step=start_step, skip_steps=skip_steps)

    return from_step() if seed is None else from_step

  def build_schedule(self):
    optim, resolved = self.experiment.optimizer, self.experiment.resolved
    return schedule.WarmUpAndCosineDecay(
        optim.learning_rate, resolved.num_train_examples,
        self.experiment.data.train_batch_size, optim.warmup_epochs,
        resolved.train_steps, optim.learning_rate_scaling)

  def build_optimizer(self, model, learning_rate):
    """The optimizer, loss-scaled under mixed_float16 (precision.py)."""
    optim = self.experiment.optimizer
    return precision.wrap_optimizer(optimization.build_optimizer(
        optim.optimizer, learning_rate, optim.momentum, optim.weight_decay,
        model=model), self.experiment.run.mixed_precision)

  def build_memory(self, model):
    loss = self.experiment.loss
    if not loss.memory_size:
      return None
    return memory_buffer.MemoryBuffer(model.config, loss.memory_size,
                                      model.config.proj_out_dim,
                                      loss.memory_ema_decay)

  def build_teacher(self):
    run = self.experiment.run
    if run.train_mode != 'distill':
      return None
    return distillation.load_teacher(
        self.context.teacher or run.teacher_checkpoint,
        self.experiment.model.image_size,
        self.experiment.resolved.num_classes, run.teacher_ft_proj_selector)

  def build_augment_fn(self):
    data = self.experiment.data
    if not data.augment_on_device:
      return None
    return color_augment.make_augment_fn(data.color_jitter_strength,
                                         seed=self.experiment.run.seed)

  def build_training(self):
    """Every piece of training, the weights restored from the run's start.

    Returns:
      Training.
    """
    run = self.experiment.run
    model = self.build_model()
    with self.strategy.scope():
      dataset = self.build_train_dataset()
      teacher = self.build_teacher()
      learning_rate = self.build_schedule()
      optimizer = self.build_optimizer(model, learning_rate)
      memory = self.build_memory(model)
      state = checkpoint_state.CheckpointState(
          model, optimizer, run.model_dir, run.keep_checkpoint_max, memory,
          save_dir=None if self.context.chief else self.context.scratch_dir())
      restored = state.restore_or_initialize(
          run.checkpoint, use_ema=run.use_ema,
          zero_init_logits_layer=self.experiment.model.zero_init_logits_layer,
          start=self.context.start)
      losses = loss_config(self.experiment)
      metrics = step_lib.build_metrics(losses)
    step = step_lib.make_train_step(
        model, optimizer, losses, self.strategy, metrics, teacher=teacher,
        memory=memory, augment_fn=self.build_augment_fn(),
        nan_policy=run.nan_policy, jit_compile=run.jit_compile, seed=run.seed,
        num_microbatches=run.num_microbatches)
    return Training(state, step, metrics, dataset, learning_rate, memory,
                    restored)

  def views_per_step(self):
    """Images through the network per step (two views when pretraining)."""
    views = 2 if self.experiment.run.train_mode == 'pretrain' else 1
    return self.experiment.data.train_batch_size * views

  def labeled_train_dataset(self):
    """The labeled --train_split, unaugmented: the frozen-feature memory."""
    data = self.experiment.data
    return self.build_dataset(data.eval_batch_size, False, data.train_split,
                              labeled_only=True)

  def build_knn_evaluator(self, eval_dataset):
    """`fn(model)` of the kNN evaluation, its memory the labeled train split."""
    run = self.experiment.run

    def knn_eval(model):
      memory = self.labeled_train_dataset()
      results = knn.evaluate_knn(
          model, self.strategy, memory, eval_dataset,
          self.experiment.resolved.num_classes, k=run.knn_k,
          temperature=run.knn_temperature,
          eval_steps=self.experiment.resolved.eval_steps)
      return {f'eval/{name}': value for name, value in results.items()}

    return knn_eval

  def build_evaluators(self, model):
    """The supervised head's, --eval_knn's and --eval_linear_probe's."""
    experiment = self.experiment
    data, run = experiment.data, experiment.run
    dataset = data_lib.build_distributed_dataset(
        self.context.builder, data.eval_batch_size, False, self.strategy,
        **input_kwargs(experiment, data.eval_split))
    found = []
    if model.supervised_head is not None:
      found.append(lambda m: linear_head.evaluate(
          m, self.strategy, dataset, experiment.resolved.eval_steps,
          experiment.optimizer.optimizer, experiment.optimizer.weight_decay,
          jit_compile=run.jit_compile))
    if run.eval_knn:
      found.append(self.build_knn_evaluator(dataset))
    if run.eval_linear_probe:
      found.append(linear_probe.make_evaluator(
          self.strategy, self.labeled_train_dataset, dataset,
          eval_steps=experiment.resolved.eval_steps,
          held_out_fraction=run.linear_probe_held_out))
    return found

  def summary_writer(self):
    """The chief's summaries go to model_dir; other workers write none."""
    if self.context.chief:
      return tf.summary.create_file_writer(self.experiment.run.model_dir)
    return tf.summary.create_noop_writer()
