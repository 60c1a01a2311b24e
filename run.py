r"""SimCLR command line: pretrain, fine-tune, evaluate and export.

The only module that defines or reads flags. Flag names, types and defaults
are those of google-research/simclr's tf2/run.py, so its documented commands
work unchanged; they are validated here and turned into plain arguments for
the library in tf2/.

Quickstart on the embedded digits dataset (no network needed):

  python run.py --dataset=digits --image_size=16 --resnet_depth=18 \
    --train_batch_size=64 --train_epochs=2 --use_tpu=False \
    --model_dir=/tmp/simclr_digits
"""

import json
import math
import os
import sys

from absl import app
from absl import flags
from absl import logging

import tf2  # pylint: disable=unused-import  (sets TF_USE_LEGACY_KERAS first)
import tensorflow as tf  # pylint: disable=g-bad-import-order

from tf2 import checkpoint_io
from tf2 import config as config_lib
from tf2 import data as data_lib
from tf2 import distillation
from tf2 import evaluation
from tf2 import knn
from tf2 import memory_buffer
from tf2 import model as model_lib
from tf2 import optimization
from tf2 import schedule
from tf2 import strategy as strategy_lib
from tf2 import training
from tf2.datasets import image_folder

FLAGS = flags.FLAGS

# --- The reference flags (same names, types and defaults). ---
flags.DEFINE_float('learning_rate', 0.3, 'Initial learning rate per batch '
                   'size of 256.')
flags.DEFINE_enum('learning_rate_scaling', 'linear', ['linear', 'sqrt'],
                  'How to scale the learning rate as a function of batch '
                  'size.')
flags.DEFINE_float('warmup_epochs', 10, 'Number of epochs of warmup.')
flags.DEFINE_float('weight_decay', 1e-6, 'Amount of weight decay to use.')
flags.DEFINE_float('batch_norm_decay', 0.9, 'Batch norm decay parameter.')
flags.DEFINE_integer('train_batch_size', 512, 'Batch size for training.')
flags.DEFINE_string('train_split', 'train', 'Split for training.')
flags.DEFINE_integer('train_epochs', 100, 'Number of epochs to train for.')
flags.DEFINE_integer('train_steps', 0, 'Number of steps to train for. If '
                     'provided, overrides train_epochs.')
flags.DEFINE_integer('eval_steps', 0, 'Number of steps to eval for. If not '
                     'provided, evals over entire dataset.')
flags.DEFINE_integer('eval_batch_size', 256, 'Batch size for eval.')
flags.DEFINE_integer('checkpoint_epochs', 1, 'Number of epochs between '
                     'checkpoints/summaries.')
flags.DEFINE_integer('checkpoint_steps', 0, 'Number of steps between '
                     'checkpoints/summaries. If provided, overrides '
                     'checkpoint_epochs.')
flags.DEFINE_string('eval_split', 'validation', 'Split for evaluation.')
flags.DEFINE_string('dataset', 'imagenet2012', 'Name of a dataset (TFDS), '
                    'or the path of a folder of images (see README).')
flags.DEFINE_bool('cache_dataset', False, 'Whether to cache the entire '
                  'dataset in memory. If the dataset is ImageNet, this is a '
                  'very bad idea, but for smaller datasets it can improve '
                  'performance.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'train_then_eval'],
                  'Whether to perform training or evaluation.')
flags.DEFINE_enum('train_mode', 'pretrain', ['pretrain', 'finetune',
                                              'distill'],
                  'The train mode controls different objectives and trainable '
                  'components. distill (beyond the reference): train the '
                  'model on --teacher_checkpoint\'s soft labels.')
flags.DEFINE_bool('lineareval_while_pretraining', True, 'Whether to finetune '
                  'supervised head while pretraining.')
flags.DEFINE_string('checkpoint', None, 'Loading from the given checkpoint '
                    'for fine-tuning if a finetuning checkpoint does not '
                    'already exist in model_dir.')
flags.DEFINE_bool('zero_init_logits_layer', False, 'If True, zero initialize '
                  'layers after avg_pool for supervised learning.')
flags.DEFINE_integer('fine_tune_after_block', -1, 'The layers after which '
                     'block that we will fine-tune. -1 means fine-tuning '
                     'everything. 0 means fine-tuning after stem block. 4 '
                     'means fine-tuning just the linear head.')
flags.DEFINE_string('master', None, 'Address/name of the TensorFlow master '
                    'to use. By default, use an in-process master.')
flags.DEFINE_string('model_dir', None, 'Model directory for training.')
flags.DEFINE_string('data_dir', None, 'Directory where dataset is stored.')
flags.DEFINE_bool('use_tpu', True, 'Whether to run on TPU.')
flags.DEFINE_string('tpu_name', None, 'The Cloud TPU to use for training.')
flags.DEFINE_string('tpu_zone', None, 'GCE zone where the Cloud TPU is '
                    'located in.')
flags.DEFINE_string('gcp_project', None, 'Project name for the Cloud TPU-'
                    'enabled project.')
flags.DEFINE_enum('optimizer', 'lars', ['momentum', 'adam', 'lars'],
                  'Optimizer to use.')
flags.DEFINE_float('momentum', 0.9, 'Momentum parameter.')
flags.DEFINE_string('eval_name', None, 'Name for eval.')
flags.DEFINE_integer('keep_checkpoint_max', 5, 'Maximum number of '
                     'checkpoints to keep.')
flags.DEFINE_integer('keep_hub_module_max', 1, 'Maximum number of Hub '
                     'modules to keep.')
flags.DEFINE_float('temperature', 0.1, 'Temperature parameter for contrastive '
                   'loss.')
flags.DEFINE_boolean('hidden_norm', True, 'Temperature parameter for '
                     'contrastive loss.')
flags.DEFINE_enum('proj_head_mode', 'nonlinear',
                  ['none', 'linear', 'nonlinear'], 'How the head projection '
                  'is done.')
flags.DEFINE_integer('proj_out_dim', 128, 'Number of head projection '
                     'dimension.')
flags.DEFINE_integer('num_proj_layers', 3, 'Number of non-linear head '
                     'layers.')
flags.DEFINE_integer('ft_proj_selector', 0, 'Which layer of the projection '
                     'head to use during fine-tuning. 0 means no projection '
                     'head, and -1 means the final layer.')
flags.DEFINE_boolean('global_bn', True, 'Whether to aggregate BN statistics '
                     'across distributed cores.')
flags.DEFINE_integer('width_multiplier', 1, 'Multiplier to change width of '
                     'network.')
flags.DEFINE_integer('resnet_depth', 50, 'Depth of ResNet.')
flags.DEFINE_float('sk_ratio', 0., 'If it is bigger than 0, it will enable '
                   'SK. Recommendation: 0.0625.')
flags.DEFINE_float('se_ratio', 0., 'If it is bigger than 0, it will enable '
                   'SE.')
flags.DEFINE_integer('image_size', 224, 'Input image size.')
flags.DEFINE_float('color_jitter_strength', 1.0, 'The strength of color '
                   'jittering.')
flags.DEFINE_boolean('use_blur', True, 'Whether or not to use Gaussian blur '
                     'for augmentation during pretraining.')

# --- Beyond the reference. ---
flags.DEFINE_string('variable_schema', '?!global_step', 'Accepted so that the '
                    'reference README commands run unchanged; ignored, as in '
                    'the reference tf2 code (--checkpoint restores model '
                    'weights only).')
flags.DEFINE_bool('use_ema', False, 'With a TF1 --checkpoint, start from its '
                  'exponential-moving-average weights (ema_model/) instead '
                  'of the raw ones.')

# Semi-supervised recipe: label subsets and distillation.
flags.DEFINE_float('label_fraction', 0.0, 'Use labels of only this fraction '
                   'of --train_split (0 < f <= 1), class-balanced; the rest '
                   'is the unlabeled pool. 0: all labels.')
flags.DEFINE_integer('labels_per_class', 0, 'Use labels of only this many '
                     'examples per class of --train_split. 0: all labels.')
flags.DEFINE_integer('label_seed', 0, 'Seed of the labeled-subset choice.')
flags.DEFINE_string('teacher_checkpoint', None, 'With --train_mode=distill: '
                    'the fine-tuned teacher (checkpoint prefix, model_dir or '
                    'SavedModel directory, ours or published, any '
                    'architecture).')
flags.DEFINE_integer('teacher_ft_proj_selector', None, 'The teacher\'s '
                     'ft_proj_selector; by default read from the flags.json '
                     'of the run that wrote it, else 0.')
flags.DEFINE_float('distillation_temperature', 1.0, 'Softmax temperature of '
                   'teacher and student in the distillation loss.')
flags.DEFINE_float('label_loss_weight', 0.0, 'Distillation: weight w of the '
                   'ground-truth loss on labeled examples; loss = (1 - w) * '
                   'distillation + w * labels.')

# SimCLRv2's memory of negatives.
flags.DEFINE_integer('memory_size', 0, 'Pretraining: size of the queue of '
                     'negatives encoded by a moving-average copy of the '
                     'encoder and projection head (65536 in the paper). 0: '
                     'no memory, as the reference code.')
flags.DEFINE_float('memory_ema_decay', 0.999, 'Decay of the moving-average '
                   'copy that fills the memory.')

# Representation evaluation.
flags.DEFINE_bool('eval_knn', False, 'Also evaluate the frozen encoder '
                  'output with a k-nearest-neighbour classifier (cosine '
                  'similarity, temperature-weighted votes) whose memory is '
                  'the labeled --train_split, read once.')
flags.DEFINE_integer('knn_k', 200, 'Neighbours of the kNN evaluation.')
flags.DEFINE_float('knn_temperature', 0.07, 'Temperature of the kNN votes.')


class UsageError(ValueError):
  """A flag combination that cannot work; the message says what to pass."""


# Errors of bad input: shown as one line with the fix, not as a traceback.
_USER_ERRORS = (UsageError, strategy_lib.NoTPUError,
                data_lib.DatasetNotPreparedError, data_lib.ImageFolderError,
                checkpoint_io.CheckpointError)


def _exit_with(error):
  print(f'run.py: error: {error}', file=sys.stderr)
  sys.exit(2)


def _checkpoint_exists(path):
  """A prefix (its files start with it), a directory or a file."""
  return tf.io.gfile.exists(path) or tf.io.gfile.glob(path + '*')


def validate_flags():
  """Stops early, with the fix, on flags that cannot work together."""
  if not FLAGS.model_dir:
    raise UsageError('--model_dir is required: checkpoints, summaries, '
                     'results and the SavedModel are written there.')
  if FLAGS.train_mode == 'pretrain' and FLAGS.fine_tune_after_block > -1:
    raise UsageError('--fine_tune_after_block > -1 freezes layers, which '
                     'pretraining does not support: pass '
                     '--fine_tune_after_block=-1, or --train_mode=finetune.')
  if not -1 <= FLAGS.fine_tune_after_block <= 4:
    raise UsageError('--fine_tune_after_block must be in -1..4.')
  if FLAGS.checkpoint and not _checkpoint_exists(FLAGS.checkpoint):
    raise UsageError(f'--checkpoint={FLAGS.checkpoint} does not exist: pass '
                     'a checkpoint prefix (model.ckpt-250228, ckpt-3), a '
                     'checkpoint directory or a SavedModel directory.')
  for name in ('train_batch_size', 'eval_batch_size'):
    if getattr(FLAGS, name) <= 0:
      raise UsageError(f'--{name} must be positive.')
  if FLAGS.label_fraction and FLAGS.labels_per_class:
    raise UsageError('--label_fraction and --labels_per_class both choose the '
                     'labeled subset: pass only one.')
  if not 0 <= FLAGS.label_fraction <= 1 or FLAGS.labels_per_class < 0:
    raise UsageError('--label_fraction must be in (0, 1] and '
                     '--labels_per_class positive (0 turns either off).')
  if FLAGS.train_mode == 'distill' and FLAGS.mode != 'eval':
    if not FLAGS.teacher_checkpoint:
      raise UsageError('--train_mode=distill needs --teacher_checkpoint: the '
                       'fine-tuned model whose predictions the student '
                       'learns.')
    if not _checkpoint_exists(FLAGS.teacher_checkpoint):
      raise UsageError(f'--teacher_checkpoint={FLAGS.teacher_checkpoint} '
                       'does not exist.')
  if not 0 <= FLAGS.label_loss_weight <= 1:
    raise UsageError('--label_loss_weight must be in [0, 1].')
  if FLAGS.memory_size < 0 or (FLAGS.memory_size and
                                FLAGS.train_mode != 'pretrain'):
    raise UsageError('--memory_size holds negatives of the contrastive loss: '
                     'use it with --train_mode=pretrain (0 turns it off).')
  if not 0 <= FLAGS.memory_ema_decay < 1:
    raise UsageError('--memory_ema_decay must be in [0, 1).')
  if FLAGS.distillation_temperature <= 0:
    raise UsageError('--distillation_temperature must be positive.')


# Flags that a checkpoint determines; the head ones only if it has the head.
_ENCODER_FLAGS = ('resnet_depth', 'width_multiplier', 'sk_ratio', 'se_ratio')
_HEAD_FLAGS = ('proj_head_mode', 'num_proj_layers', 'proj_out_dim')


def adopt_checkpoint_architecture(path):
  """Sets architecture flags left at their defaults from the checkpoint.

  A flag given explicitly that disagrees with the checkpoint stops the run
  with both values, instead of failing later on shapes.

  Returns:
    {flag: value} of the flags changed.
  """
  arch = checkpoint_io.infer_architecture(path)
  names = _ENCODER_FLAGS + (_HEAD_FLAGS if arch['has_projection_head']
                            else ())
  changed = {}
  for name in names:
    found, current = arch[name], getattr(FLAGS, name)
    if found is None or found == current:
      continue
    if FLAGS[name].present:
      raise UsageError(
          f'--{name}={current} but the checkpoint {path} has {name}={found}. '
          f'Drop --{name} to use the checkpoint\'s value, or pass a '
          'checkpoint of the architecture you want.')
    setattr(FLAGS, name, found)
    changed[name] = found
  if arch['cifar_stem'] != (FLAGS.image_size <= 32):
    stem = 'the CIFAR stem (--image_size <= 32)' if arch['cifar_stem'] else (
        'the ImageNet stem (--image_size > 32)')
    raise UsageError(f'The checkpoint {path} has {stem}, but '
                     f'--image_size={FLAGS.image_size} selects the other.')
  return changed


def model_config(num_classes, num_replicas):
  """The architecture flags as a ModelConfig."""
  ft_proj_selector = FLAGS.ft_proj_selector
  if ft_proj_selector == -1:
    ft_proj_selector = FLAGS.num_proj_layers  # As documented: the last layer.
  return config_lib.ModelConfig(
      num_classes=num_classes,
      resnet_depth=FLAGS.resnet_depth,
      width_multiplier=FLAGS.width_multiplier,
      sk_ratio=FLAGS.sk_ratio,
      se_ratio=FLAGS.se_ratio,
      image_size=FLAGS.image_size,
      batch_norm_decay=FLAGS.batch_norm_decay,
      # With one replica, local statistics are global ones; the plain layer
      # is faster (fused kernel) and writes the same checkpoint keys.
      global_bn=FLAGS.global_bn and num_replicas > 1,
      # A student is trained as in fine-tuning: one view, supervised head.
      train_mode='pretrain' if FLAGS.train_mode == 'pretrain' else 'finetune',
      fine_tune_after_block=FLAGS.fine_tune_after_block,
      proj_head_mode=FLAGS.proj_head_mode,
      num_proj_layers=FLAGS.num_proj_layers,
      proj_out_dim=FLAGS.proj_out_dim,
      ft_proj_selector=ft_proj_selector,
      lineareval_while_pretraining=FLAGS.lineareval_while_pretraining,
      use_blur=FLAGS.use_blur)


def loss_config():
  return training.LossConfig(
      train_mode=FLAGS.train_mode,
      lineareval_while_pretraining=FLAGS.lineareval_while_pretraining,
      temperature=FLAGS.temperature, hidden_norm=FLAGS.hidden_norm,
      optimizer=FLAGS.optimizer, weight_decay=FLAGS.weight_decay,
      distillation_temperature=FLAGS.distillation_temperature,
      label_loss_weight=FLAGS.label_loss_weight)


def write_flags_json(extra=None):
  """flags.json in model_dir: every flag value, plus run facts."""
  values = {k: v for k, v in FLAGS.flag_values_dict().items()
            if isinstance(v, (str, int, float, bool, type(None), list))}
  values.update(extra or {})
  path = os.path.join(FLAGS.model_dir, 'flags.json')
  with open(path + '.tmp', 'w') as f:
    json.dump(values, f, indent=1, sort_keys=True)
  os.replace(path + '.tmp', path)


def input_kwargs(split, subset=None):
  """build_input_fn arguments; a label subset marks (or keeps) its examples.

  Fine-tuning reads the labeled examples only; pretraining (linear eval)
  and distillation read the whole split and use labels where marked.
  """
  return dict(split=split, image_size=FLAGS.image_size,
              train_mode=FLAGS.train_mode, cache_dataset=FLAGS.cache_dataset,
              color_jitter_strength=FLAGS.color_jitter_strength,
              labeled_ids=None if subset is None else subset.labeled_ids,
              labeled_only=FLAGS.train_mode == 'finetune')


def label_subset_for(builder):
  """The labeled subset of --train_split chosen by the flags, or None.

  Chosen once and saved as model_dir/label_subset.json; a resumed run reads
  that file, so it keeps exactly the same labeled examples.
  """
  if not (FLAGS.label_fraction or FLAGS.labels_per_class):
    return None
  from tf2 import label_subset  # pylint: disable=g-import-not-at-top
  path = os.path.join(FLAGS.model_dir, 'label_subset.json')
  if tf.io.gfile.exists(path):
    return label_subset.load_label_subset(path)
  subset = label_subset.make_label_subset(
      builder, FLAGS.train_split, fraction=FLAGS.label_fraction or None,
      per_class=FLAGS.labels_per_class or None, seed=FLAGS.label_seed)
  label_subset.save_label_subset(subset, path)
  return subset


def knn_eval_fn(strategy, builder, eval_dataset, eval_steps, subset):
  """`fn(model)` of the kNN evaluation, its memory the labeled train split."""
  num_classes = data_lib.num_classes(builder)

  def knn_eval(model):
    memory = data_lib.build_distributed_dataset(
        builder, FLAGS.eval_batch_size, False, strategy,
        **dict(input_kwargs(FLAGS.train_split, subset), labeled_only=True))
    results = knn.evaluate_knn(model, strategy, memory, eval_dataset,
                               num_classes, k=FLAGS.knn_k,
                               temperature=FLAGS.knn_temperature,
                               eval_steps=eval_steps)
    return {f'eval/{name}': value for name, value in results.items()}

  return knn_eval


def run_eval(model, strategy, builder, eval_steps, checkpoint_path,
             subset=None):
  dataset = data_lib.build_distributed_dataset(
      builder, FLAGS.eval_batch_size, False, strategy,
      **input_kwargs(FLAGS.eval_split))
  has_head = model.supervised_head is not None
  extra_eval = None
  if FLAGS.eval_knn:
    extra_eval = knn_eval_fn(strategy, builder, dataset, eval_steps, subset)
  return evaluation.evaluate_checkpoint(
      model, strategy, dataset, eval_steps, checkpoint_path, FLAGS.model_dir,
      FLAGS.optimizer, FLAGS.weight_decay, FLAGS.keep_hub_module_max,
      run_eval=has_head, extra_eval=extra_eval)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    run()
  except _USER_ERRORS as e:
    _exit_with(e)


def run():
  """Runs the mode chosen by --mode."""
  validate_flags()
  strategy = strategy_lib.build_strategy(
      FLAGS.use_tpu, FLAGS.tpu_name, FLAGS.tpu_zone, FLAGS.gcp_project,
      FLAGS.master)
  builder = data_lib.get_builder(FLAGS.dataset, FLAGS.data_dir)
  if image_folder.is_image_folder(FLAGS.dataset):
    logging.info('Image folder:\n%s', image_folder.describe(builder))
  tf.io.gfile.makedirs(FLAGS.model_dir)
  start_from = tf.train.latest_checkpoint(FLAGS.model_dir) or FLAGS.checkpoint
  if start_from:
    changed = adopt_checkpoint_architecture(start_from)
    if changed:
      logging.info('Architecture from %s: %s', start_from, changed)
  subset = None if FLAGS.mode == 'eval' else label_subset_for(builder)
  num_split_examples = data_lib.num_examples(builder, FLAGS.train_split)
  counts = {'num_labeled_examples': num_split_examples,
            'num_unlabeled_examples': 0}
  if subset is not None:
    counts = {'num_labeled_examples': subset.num_labeled,
              'num_unlabeled_examples': subset.num_unlabeled}
    logging.info('Label subset of %s: %d labeled (%s per class), %d '
                 'unlabeled.', FLAGS.train_split, subset.num_labeled,
                 subset.labeled_per_class, subset.num_unlabeled)
  # An epoch of fine-tuning on a subset is a pass over its labeled part.
  num_train_examples = (counts['num_labeled_examples']
                        if subset is not None and
                        FLAGS.train_mode == 'finetune'
                        else num_split_examples)
  num_eval_examples = (0 if FLAGS.mode == 'train' else
                       data_lib.num_examples(builder, FLAGS.eval_split))
  num_classes = data_lib.num_classes(builder)
  train_steps = schedule.get_train_steps(
      num_train_examples, FLAGS.train_batch_size, FLAGS.train_epochs,
      FLAGS.train_steps)
  epoch_steps = max(1, int(round(num_train_examples / FLAGS.train_batch_size)))
  eval_steps = FLAGS.eval_steps or max(
      1, int(math.ceil(num_eval_examples / FLAGS.eval_batch_size)))
  steps_per_loop = FLAGS.checkpoint_steps or (
      FLAGS.checkpoint_epochs * epoch_steps)
  logging.info('# train examples: %d, # train steps: %d, # eval examples: '
               '%d, # eval steps: %d, # classes: %d, replicas: %d',
               num_train_examples, train_steps, num_eval_examples, eval_steps,
               num_classes, strategy.num_replicas_in_sync)

  with strategy.scope():
    model = model_lib.build_model(
        model_config(num_classes, strategy.num_replicas_in_sync))

  if FLAGS.mode == 'eval':
    for checkpoint_path in tf.train.checkpoints_iterator(
        FLAGS.model_dir, min_interval_secs=15):
      result = run_eval(model, strategy, builder, eval_steps, checkpoint_path)
      if result['global_step'] >= train_steps:
        logging.info('Eval complete at step %d.', result['global_step'])
        return
    return

  write_flags_json(dict(counts, num_train_examples=num_train_examples,
                        num_eval_examples=num_eval_examples,
                        train_steps=train_steps))
  with strategy.scope():
    dataset = data_lib.build_distributed_dataset(
        builder, FLAGS.train_batch_size, True, strategy,
        **input_kwargs(FLAGS.train_split, subset))
    teacher = None
    if FLAGS.train_mode == 'distill':
      teacher = distillation.load_teacher(
          FLAGS.teacher_checkpoint, FLAGS.image_size, num_classes,
          FLAGS.teacher_ft_proj_selector)
    learning_rate = schedule.WarmUpAndCosineDecay(
        FLAGS.learning_rate, num_train_examples, FLAGS.train_batch_size,
        FLAGS.warmup_epochs, train_steps, FLAGS.learning_rate_scaling)
    optimizer = optimization.build_optimizer(
        FLAGS.optimizer, learning_rate, FLAGS.momentum, FLAGS.weight_decay)
    memory = None
    if FLAGS.memory_size:
      memory = memory_buffer.MemoryBuffer(
          model.config, FLAGS.memory_size, model.config.proj_out_dim,
          FLAGS.memory_ema_decay)
    state = training.CheckpointState(model, optimizer, FLAGS.model_dir,
                                     FLAGS.keep_checkpoint_max, memory)
    logging.info(state.restore_or_initialize(
        FLAGS.checkpoint, use_ema=FLAGS.use_ema,
        zero_init_logits_layer=FLAGS.zero_init_logits_layer))

  summary_writer = tf.summary.create_file_writer(FLAGS.model_dir)
  training.train(state, strategy, dataset, loss_config(), train_steps,
                 steps_per_loop, learning_rate, summary_writer,
                 teacher=teacher, memory=memory)
  logging.info('Training complete.')
  if memory is not None:
    ema_dir = os.path.join(FLAGS.model_dir, 'saved_model_ema',
                           str(int(state.global_step.numpy())))
    memory.export_ema_saved_model(ema_dir)
    logging.info('Moving-average model exported to %s.', ema_dir)
  if FLAGS.mode == 'train_then_eval':
    run_eval(model, strategy, builder, eval_steps,
             state.manager.latest_checkpoint, subset)


if __name__ == '__main__':
  app.run(main)
