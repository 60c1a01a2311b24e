"""The library's pieces an Experiment describes, for the runner.

run.py's settings are flag-level (`experiment.py`); the library takes plain
arguments. This module is the one translation: the ModelConfig and
LossConfig of an experiment, the arguments of its input pipelines, its
training dataset, and its list of evaluators (`evaluation.py`).
"""

from tf2.models import config as config_lib
from tf2.data import pipeline as data_lib
from tf2.evaluation import linear_head as evaluation
from tf2.evaluation import knn
from tf2.evaluation import linear_probe
from tf2.training import step as training


def model_config(experiment):
  """The library's ModelConfig of an experiment."""
  model, run = experiment.model, experiment.run
  ft_proj_selector = model.ft_proj_selector
  if ft_proj_selector == -1:
    ft_proj_selector = model.num_proj_layers  # As documented: the last layer.
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
      ft_proj_selector=ft_proj_selector,
      lineareval_while_pretraining=model.lineareval_while_pretraining,
      use_blur=experiment.data.use_blur)


def loss_config(experiment):
  """The train step's LossConfig of an experiment."""
  loss, optimizer = experiment.loss, experiment.optimizer
  return training.LossConfig(
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


def train_dataset(context):
  """The distributed train dataset; with --seed, `dataset(start_step)`.

  A seeded run's data order is a function of the step: training.train
  rebuilds its pipeline from every checkpoint's step (reproducibility.py).
  """
  experiment = context.experiment
  data, seed = experiment.data, experiment.run.seed

  def from_step(start_step=0):
    return data_lib.build_distributed_dataset(
        context.builder, data.train_batch_size, True, context.strategy,
        per_replica_pipelines=context.per_replica_pipelines,
        seed=seed, start_step=start_step,
        **input_kwargs(experiment, data.train_split, context.subset))

  return from_step() if seed is None else from_step


def knn_evaluator(context, eval_dataset):
  """`fn(model)` of the kNN evaluation, its memory the labeled train split."""
  experiment = context.experiment
  data, run = experiment.data, experiment.run

  def knn_eval(model):
    memory = data_lib.build_distributed_dataset(
        context.builder, data.eval_batch_size, False, context.strategy,
        **dict(input_kwargs(experiment, data.train_split, context.subset),
               labeled_only=True))
    results = knn.evaluate_knn(
        model, context.strategy, memory, eval_dataset,
        experiment.resolved.num_classes, k=run.knn_k,
        temperature=run.knn_temperature,
        eval_steps=experiment.resolved.eval_steps)
    return {f'eval/{name}': value for name, value in results.items()}

  return knn_eval


def evaluators(context, model):
  """The measurements of --eval_knn and of the supervised head, if any."""
  experiment = context.experiment
  data, run = experiment.data, experiment.run
  dataset = data_lib.build_distributed_dataset(
      context.builder, data.eval_batch_size, False, context.strategy,
      **input_kwargs(experiment, data.eval_split))
  found = []
  if model.supervised_head is not None:
    found.append(lambda m: evaluation.evaluate(
        m, context.strategy, dataset, experiment.resolved.eval_steps,
        experiment.optimizer.optimizer, experiment.optimizer.weight_decay,
        jit_compile=run.jit_compile))
  if run.eval_knn:
    found.append(knn_evaluator(context, dataset))
  if run.eval_linear_probe:
    found.append(linear_probe.make_evaluator(
        context.strategy, lambda: data_lib.build_distributed_dataset(
            context.builder, data.eval_batch_size, False, context.strategy,
            **dict(input_kwargs(experiment, data.train_split, context.subset),
                   labeled_only=True)),
        dataset, eval_steps=experiment.resolved.eval_steps,
        held_out_fraction=run.linear_probe_held_out))
  return found
