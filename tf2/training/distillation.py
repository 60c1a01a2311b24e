"""Distillation / self-training: a teacher's soft labels train a student.

Step three of SimCLRv2: the fine-tuned network labels the unlabeled images
and a student (the same architecture for self-distillation, or a smaller one)
learns from those soft labels, optionally mixed with the ground-truth loss on
the labeled subset. The loss is the paper's eq. (3): cross-entropy between
the teacher's and the student's temperature-scaled softmax,

  L_distill = - mean_x sum_y P_T(y | x; tau) log P_S(y | x; tau).

The teacher is any checkpoint `checkpoint_restore` can read (ours or Google's, of
any architecture), rebuilt as a `Model` and only ever run in inference mode:
its batch-norm statistics and weights never change.
"""

from absl import logging
import tensorflow as tf

from tf2.checkpoints import architecture
from tf2.checkpoints import files as checkpoint_files
from tf2.checkpoints import restore as checkpoint_restore
from tf2.models import config as config_lib
from tf2.models import model as model_lib
from tf2.runtime import model_dir as model_dir_lib


def distillation_loss(teacher_logits, student_logits, temperature=1.0):
  """Cross-entropy of the student's tempered softmax to the teacher's.

  Args:
    teacher_logits: (B, C); no gradient flows into them.
    student_logits: (B, C).
    temperature: tau, dividing both sets of logits (1 as in the paper).

  Returns:
    (B,) per-example losses; the caller averages (or weights) them.
  """
  teacher_probs = tf.nn.softmax(
      tf.stop_gradient(teacher_logits) / temperature)
  return tf.nn.softmax_cross_entropy_with_logits(
      teacher_probs, student_logits / temperature)


def weighted(distill_loss, label_loss, label_loss_weight):
  """The distilling student's loss: (1 - w) * distillation + w * labels.

  With w = 0 (the paper's choice: the teacher only) the labels' loss is left
  out altogether, so that it adds nothing, not even a zero gradient path.
  """
  loss = (1.0 - label_loss_weight) * distill_loss
  if label_loss_weight:
    loss += label_loss_weight * label_loss
  return loss


def teacher_ft_proj_selector(path, explicit=None):
  """Which projection layer feeds the teacher's supervised head.

  Checkpoint shapes cannot tell: the hidden projection layers have the
  encoder's width, so a head on layer 0 or 1 has the same shape. An explicit
  value wins; else the teacher's own record (runs of this project write
  experiment.json and flags.json); else 0, the reference default. -1 means
  the last layer, as for --ft_proj_selector.

  Returns:
    (selector, where it came from) for the log.
  """
  recorded, found = model_dir_lib.settings_near(path)
  num_layers = (recorded or {}).get('num_proj_layers', 3)
  if explicit is not None:
    selector, source = explicit, 'given'
  elif found:
    selector, source = recorded.get('ft_proj_selector', 0), found
  else:
    return 0, 'default (no record of the run beside the teacher)'
  return config_lib.projection_layer(selector, num_layers), source


def open_teacher(path, num_classes=None):
  """Opens the teacher's checkpoint and checks that it can teach.

  A run calls it before it writes anything (`context.prepare`), so that a
  --teacher_checkpoint that is no checkpoint, or cannot label images, stops
  it there.

  Args:
    path: checkpoint prefix, model_dir or SavedModel directory (or the
      `OpenedCheckpoint` of one).
    num_classes: when given, the teacher's head must predict that many.

  Returns:
    The `checkpoint_files.OpenedCheckpoint`.

  Raises:
    checkpoint_files.CheckpointError: unreadable, or the checkpoint has no
      supervised head (a pretrained-only model cannot teach), or its head
      predicts another number of classes.
  """
  opened = checkpoint_files.open_checkpoint(path)
  _teaching_architecture(opened, num_classes)
  return opened


def _teaching_architecture(opened, num_classes):
  """The opened teacher's architecture, once checked that it can teach."""
  path = opened.path
  arch = architecture.infer_architecture(opened)
  if not arch['has_supervised_head']:
    raise checkpoint_files.CheckpointError(
        f'The teacher {path} has no supervised head, so it cannot label '
        'images: fine-tune it first (--train_mode=finetune) and pass the '
        'fine-tuned checkpoint as --teacher_checkpoint.')
  if num_classes is not None and arch['num_classes'] != num_classes:
    raise checkpoint_files.CheckpointError(
        f'The teacher {path} predicts {arch["num_classes"]} classes but the '
        f'dataset has {num_classes}: pass a teacher fine-tuned on this '
        'dataset.')
  return arch


def load_teacher(path, image_size, num_classes=None, ft_proj_selector=None):
  """Rebuilds the teacher of any checkpoint format, in inference mode.

  Call inside the strategy's scope so that its variables are mirrored.

  Args:
    path: checkpoint prefix, model_dir or SavedModel directory (or the
      `OpenedCheckpoint` that `open_teacher` returned).
    image_size: the students' input size (the teacher sees the same images).
    num_classes: when given, the teacher's head must predict that many.
    ft_proj_selector: see `teacher_ft_proj_selector`.

  Returns:
    A `Model` with a supervised head, weights restored, `trainable=False`.

  Raises:
    checkpoint_files.CheckpointError: see `open_teacher`.
  """
  opened = checkpoint_files.open_checkpoint(path)
  arch = _teaching_architecture(opened, num_classes)
  path = opened.path
  selector, source = teacher_ft_proj_selector(path, ft_proj_selector)
  config = architecture.model_config_for(
      arch, image_size=image_size, ft_proj_selector=selector,
      cifar_stem=arch['cifar_stem'])
  teacher = model_lib.build_model(config)
  report = checkpoint_restore.restore_model_weights(teacher, opened,
                                                    strict=False)
  teacher.trainable = False
  logging.info('Teacher %s: %s; ft_proj_selector=%d (%s). %s', path,
               architecture.describe_architecture(arch), selector, source,
               report.summary())
  return teacher


def teacher_logits(teacher, images):
  """The teacher's logits in inference mode, without gradient."""
  _, logits = teacher(images, training=False)
  return tf.stop_gradient(logits)
