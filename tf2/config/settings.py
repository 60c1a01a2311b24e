"""The settings of a run: run.py's flags, described once.

Five frozen sections (model, data, optimizer, loss, run) hold every setting
of an experiment. Each field is named and defaulted as the run.py flag of
the same name (the reference's flags keep their names, types and defaults)
and carries that flag's help text: run.py defines its flags from these
fields, so there is one list of settings. `Resolved` holds what the dataset
and the checkpoint determine (`resolve.py`). `experiment.py` composes them.

One source per fact: the defaults of the settings that the library's
configs also have (`ModelConfig`, `LossConfig`) are those configs' defaults,
and every choice a library module checks is that module's tuple.
"""

import dataclasses
import typing
from typing import Optional

from tf2.models import config as model_config_lib
from tf2.models import model as model_lib
from tf2.runtime import cluster
from tf2.runtime import precision
from tf2.runtime import preemption
from tf2.runtime import strategy
from tf2.training import optimization
from tf2.training import schedule
from tf2.training import step

_MODEL = model_config_lib.ModelConfig()
_LOSS = step.LossConfig()


def _field(default, help_text, choices=None):
  return dataclasses.field(default=default,
                           metadata=dict(help=help_text, choices=choices))


@dataclasses.dataclass(frozen=True)
class ModelSection:
  """The network: encoder, projection head, supervised head."""
  resnet_depth: int = _field(_MODEL.resnet_depth, 'Depth of ResNet.')
  width_multiplier: int = _field(_MODEL.width_multiplier, 'Multiplier to change width of network.')
  sk_ratio: float = _field(_MODEL.sk_ratio, 'If it is bigger than 0, it will enable SK. '
                           'Recommendation: 0.0625.')
  se_ratio: float = _field(_MODEL.se_ratio, 'If it is bigger than 0, it will enable SE.')
  image_size: int = _field(_MODEL.image_size, 'Input image size.')
  batch_norm_decay: float = _field(_MODEL.batch_norm_decay, 'Batch norm decay parameter.')
  global_bn: bool = _field(_MODEL.global_bn, 'Whether to aggregate BN statistics across '
                           'distributed cores.')
  proj_head_mode: str = _field(_MODEL.proj_head_mode, 'How the head projection is '
                               'done.', model_lib.PROJ_HEAD_MODES)
  proj_out_dim: int = _field(_MODEL.proj_out_dim, 'Number of head projection dimension.')
  num_proj_layers: int = _field(_MODEL.num_proj_layers, 'Number of non-linear head layers.')
  ft_proj_selector: int = _field(_MODEL.ft_proj_selector, 'Which layer of the projection head to use during fine-tuning. 0 '
      'means no projection head, and -1 means the final layer.')
  fine_tune_after_block: int = _field(_MODEL.fine_tune_after_block, 'The layers after which block that we will fine-tune. -1 means '
      'fine-tuning everything. 0 means fine-tuning after stem block. 4 means '
      'fine-tuning just the linear head.')
  lineareval_while_pretraining: bool = _field(_MODEL.lineareval_while_pretraining, 'Whether to finetune supervised head while pretraining.')
  recompute_blocks: bool = _field(
      _MODEL.recompute_blocks, 'Recompute the activations of each residual '
      'block in the backward pass instead of keeping them: less memory, one '
      'more forward pass of the encoder per step, the same gradients.')
  zero_init_logits_layer: bool = _field(
      False, 'If True, zero initialize layers after avg_pool for supervised '
      'learning.')


@dataclasses.dataclass(frozen=True)
class DataSection:
  """What is read, how it is split, batched and augmented."""
  dataset: str = _field('imagenet2012', 'Name of a dataset (TFDS), or the '
                        'path of a folder of images (see README).')
  data_dir: Optional[str] = _field(None, 'Directory where dataset is stored.')
  train_split: str = _field('train', 'Split for training.')
  eval_split: str = _field('validation', 'Split for evaluation.')
  train_batch_size: int = _field(512, 'Batch size for training.')
  eval_batch_size: int = _field(256, 'Batch size for eval.')
  cache_dataset: bool = _field(
      False, 'Whether to cache the entire dataset in memory. If the dataset '
      'is ImageNet, this is a very bad idea, but for smaller datasets it can '
      'improve performance.')
  color_jitter_strength: float = _field(1.0, 'The strength of color '
                                        'jittering.')
  use_blur: bool = _field(_MODEL.use_blur, 'Whether or not to use Gaussian blur for '
                          'augmentation during pretraining.')
  label_fraction: float = _field(
      0.0, 'Use labels of only this fraction of --train_split (0 < f <= 1), '
      'class-balanced; the rest is the unlabeled pool. 0: all labels.')
  labels_per_class: int = _field(
      0, 'Use labels of only this many examples per class of --train_split. '
      '0: all labels.')
  label_seed: int = _field(0, 'Seed of the labeled-subset choice.')
  augment_on_device: bool = _field(
      False, 'Pretraining: crop, resize and flip on the host, colour '
      'distortion (same distributions) on the accelerator, batched.')


@dataclasses.dataclass(frozen=True)
class OptimizerSection:
  """The optimizer and its learning-rate schedule."""
  optimizer: str = _field(_LOSS.optimizer, 'Optimizer to use.',
                          optimization.OPTIMIZERS)
  learning_rate: float = _field(0.3, 'Initial learning rate per batch size '
                                'of 256.')
  learning_rate_scaling: str = _field(
      'linear', 'How to scale the learning rate as a function of batch size.',
      schedule.SCALINGS)
  warmup_epochs: float = _field(10, 'Number of epochs of warmup.')
  momentum: float = _field(0.9, 'Momentum parameter.')
  weight_decay: float = _field(_LOSS.weight_decay, 'Amount of weight decay to use.')


@dataclasses.dataclass(frozen=True)
class LossSection:
  """What the train step minimises."""
  temperature: float = _field(_LOSS.temperature, 'Temperature parameter for contrastive '
                              'loss.')
  hidden_norm: bool = _field(_LOSS.hidden_norm, 'Whether to l2-normalise the projections '
                             'before the contrastive loss (cosine '
                             'similarity).')
  memory_size: int = _field(
      0, 'Pretraining: size of the queue of negatives encoded by a '
      'moving-average copy of the encoder and projection head (65536 in the '
      'paper). 0: no memory, as the reference code.')
  memory_ema_decay: float = _field(0.999, 'Decay of the moving-average copy '
                                   'that fills the memory.')
  distillation_temperature: float = _field(
      _LOSS.distillation_temperature, 'Softmax temperature of teacher and student in the distillation '
      'loss.')
  label_loss_weight: float = _field(
      _LOSS.label_loss_weight, 'Distillation: weight w of the ground-truth loss on labeled '
      'examples; loss = (1 - w) * distillation + w * labels.')


@dataclasses.dataclass(frozen=True)
class RunSection:
  """What to do, from where, where to write, for how long, on what."""
  mode: str = _field('train', 'Whether to perform training or evaluation.',
                     ('train', 'eval', 'train_then_eval'))
  train_mode: str = _field(
      _LOSS.train_mode, 'The train mode controls different objectives and '
      'trainable components. distill (beyond the reference): train the model '
      "on --teacher_checkpoint's soft labels.",
      step.TRAIN_MODES)
  model_dir: Optional[str] = _field(None, 'Model directory for training.')
  checkpoint: Optional[str] = _field(
      None, 'Loading from the given checkpoint for fine-tuning if a '
      'finetuning checkpoint does not already exist in model_dir.')
  use_ema: bool = _field(False, 'With a TF1 --checkpoint, start from its '
                         'exponential-moving-average weights (ema_model/) '
                         'instead of the raw ones.')
  variable_schema: str = _field(
      '?!global_step', 'Accepted so that the reference README commands run '
      'unchanged; ignored, as in the reference tf2 code (--checkpoint '
      'restores model weights only).')
  teacher_checkpoint: Optional[str] = _field(
      None, 'With --train_mode=distill: the fine-tuned teacher (checkpoint '
      'prefix, model_dir or SavedModel directory, ours or published, any '
      'architecture).')
  teacher_ft_proj_selector: Optional[int] = _field(
      None, "The teacher's ft_proj_selector; by default read from the record "
      '(experiment.json or flags.json) of the run that wrote it, else 0.')
  train_epochs: int = _field(100, 'Number of epochs to train for.')
  train_steps: int = _field(0, 'Number of steps to train for. If provided, '
                            'overrides train_epochs.')
  eval_steps: int = _field(0, 'Number of steps to eval for. If not provided, '
                           'evals over entire dataset.')
  checkpoint_epochs: int = _field(1, 'Number of epochs between '
                                  'checkpoints/summaries.')
  checkpoint_steps: int = _field(0, 'Number of steps between '
                                 'checkpoints/summaries. If provided, '
                                 'overrides checkpoint_epochs.')
  keep_checkpoint_max: int = _field(5, 'Maximum number of checkpoints to '
                                    'keep.')
  keep_hub_module_max: int = _field(1, 'Maximum number of Hub modules to '
                                    'keep.')
  nan_policy: str = _field(
      'stop', 'What a step with a non-finite (NaN/Inf) loss or gradient '
      'does: stop training there (nothing of it is saved), or skip_step '
      '(no update on any replica).', step.NAN_POLICIES)
  progress_interval_secs: float = _field(
      60.0, 'Seconds between progress lines (step, steps/s, views/s, ETA) '
      'between checkpoints.')
  preemption_grace_secs: float = _field(
      preemption.DEFAULT_GRACE_S, 'Seconds between SIGTERM and the kill on '
      'your machines (30 on GCE spot VMs and by default on Kubernetes). On '
      'SIGTERM training saves after the running step and exits with code '
      f'{preemption.EXIT_CODE}; a warning says when a step and a save take '
      'longer than this.')
  seed: Optional[int] = _field(
      None, 'Seed of model initialisation, input pipeline and augmentations '
      '(host and accelerator, the batch blur): two runs with one seed, and '
      'a run killed and resumed, end with identical weights (on CPUs; GPUs '
      'also need --deterministic). The input pipeline restarts at every '
      'checkpoint. Default: fresh randomness, as published.')
  deterministic: bool = _field(
      False, "With --seed: TensorFlow's op determinism "
      '(enable_op_determinism), which GPUs need to repeat a run bit for '
      'bit; slower.')
  eval_name: Optional[str] = _field(None, 'Name for eval.')
  eval_timeout: Optional[float] = _field(
      None, '--mode=eval: stop after this many seconds without a new '
      'checkpoint. Default: wait as published, but never past the step the '
      "training run's experiment.json says it reaches.")
  eval_knn: bool = _field(
      False, 'Also evaluate the frozen encoder output with a '
      'k-nearest-neighbour classifier (cosine similarity, '
      'temperature-weighted votes) whose memory is the labeled '
      '--train_split, read once.')
  knn_k: int = _field(200, 'Neighbours of the kNN evaluation.')
  knn_temperature: float = _field(0.07, 'Temperature of the kNN votes.')
  eval_linear_probe: bool = _field(
      False, 'Also evaluate the frozen encoder output with the transfer '
      "protocol's linear probe: an L2-regularised multinomial logistic "
      'regression (scikit-learn, L-BFGS) on unaugmented features of the '
      'labeled --train_split, its regularisation chosen on a held-out part '
      'of it; reports eval/linear_probe_top_1_accuracy on --eval_split.')
  linear_probe_held_out: float = _field(
      0.2, 'Fraction of the labeled --train_split held out to choose the '
      "linear probe's regularisation (stratified by class).")
  mixed_precision: str = _field(
      'float32', 'Compute precision: float32 (as published), mixed_bfloat16 '
      'or mixed_float16 (with dynamic loss scaling). Variables, batch-norm '
      'statistics, losses and the optimizer stay float32.',
      precision.POLICIES)
  distribution_strategy: Optional[str] = _field(
      None, 'mirrored (the GPUs of this machine, else its CPU), '
      'multi_worker_mirrored (every worker TF_CONFIG names) or tpu. Default: '
      'tpu with --use_tpu, else multi_worker_mirrored when TF_CONFIG names '
      'a cluster, else mirrored.',
      strategy.STRATEGIES)
  all_reduce_alg: Optional[str] = _field(
      None, 'Collective implementation: nccl or hierarchical_copy between '
      "the GPUs of a machine, ring or nccl between workers; default: "
      "TensorFlow's choice.", strategy.ALL_REDUCE_ALGS)
  cluster_wait_secs: float = _field(
      cluster.DEFAULT_WAIT_S, 'On a cluster (TF_CONFIG): how long every task '
      'waits for the others to join before it gives up with a line naming '
      'the missing ones; while it waits it says which do not answer yet.')
  jit_compile: bool = _field(
      False, 'Compile the train and eval steps with XLA (on GPUs with the '
      'cross-replica reductions inside).')
  num_microbatches: int = _field(
      1, "Process each replica's batch in this many micro-batches, with the "
      'loss of the whole global batch (the contrastive loss is chunked as in '
      'Gao et al. 2021: negatives from all micro-batches of all replicas), '
      'so that a batch too large for the memory trains exactly. Must divide '
      'the per-replica batch. Batch norm in training mode sees one '
      'micro-batch at a time: statistics as with this many times more '
      'replicas without --global_bn (--global_bn syncs each micro-batch '
      'across replicas).')
  use_tpu: bool = _field(True, 'Whether to run on TPU.')
  tpu_name: Optional[str] = _field(None, 'The Cloud TPU to use for training.')
  tpu_zone: Optional[str] = _field(None, 'GCE zone where the Cloud TPU is '
                                   'located in.')
  gcp_project: Optional[str] = _field(None, 'Project name for the Cloud '
                                      'TPU-enabled project.')
  master: Optional[str] = _field(None, 'Address/name of the TensorFlow '
                                 'master to use. By default, use an '
                                 'in-process master.')


@dataclasses.dataclass(frozen=True)
class Resolved:
  """What the dataset and the checkpoint determine (see resolve.py).

  Attributes:
    num_classes: classes of the dataset.
    num_split_examples: examples of --train_split.
    num_labeled_examples, num_unlabeled_examples: of the label subset (all
      labeled without one).
    num_train_examples: examples per epoch (the labeled ones when
      fine-tuning on a subset).
    num_eval_examples: examples of --eval_split (0 in --mode=train).
    train_steps: the global step training ends at.
    steps_per_epoch: as the reference computes it.
    steps_per_loop: steps between checkpoints and summaries.
    eval_steps: batches evaluated.
    num_replicas: replicas of the strategy.
    architecture_from: the checkpoint the architecture was read from ('').
  """
  num_classes: int
  num_split_examples: int
  num_labeled_examples: int
  num_unlabeled_examples: int
  num_train_examples: int
  num_eval_examples: int
  train_steps: int
  steps_per_epoch: int
  steps_per_loop: int
  eval_steps: int
  num_replicas: int
  architecture_from: str = ''


# The settings that are paths (--dataset when it names a folder of images).
PATHS = ('model_dir', 'data_dir', 'checkpoint', 'teacher_checkpoint',
         'dataset')

SECTIONS = {'model': ModelSection, 'data': DataSection,
            'optimizer': OptimizerSection, 'loss': LossSection,
            'run': RunSection}


def fields():
  """{setting name: (section name, dataclasses.Field)} of every setting."""
  return {f.name: (section, f) for section, cls in SECTIONS.items()
          for f in dataclasses.fields(cls)}


def setting_type(field):
  """int, float, bool or str: the type of a setting (None allowed or not)."""
  hint = typing.get_type_hints(
      next(cls for cls in SECTIONS.values()
           if field.name in cls.__dataclass_fields__))[field.name]
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  return args[0] if args else hint


def defaults():
  """{setting name: default}: the flags' defaults."""
  return {name: f.default for name, (_, f) in fields().items()}
