"""What a training run saves in model_dir, and how it resumes from it.

The object names (`model`, `global_step`, `optimizer`) are those of the
reference, so its model_dir checkpoints resume here and ours there. With a
memory buffer, its moving-average model and queue are saved too (under
`memory`), so a resumed run continues exactly.

A checkpoint is complete or absent for a resumed run (Orbax's promise): the
newest checkpoint is read whole before it is used, and if it is damaged (a
truncated copy, a disk that filled up) the run says so and resumes from the
newest complete one. A save that fails (no space left) removes what it
half-wrote before reporting, so a full disk is not kept full by debris.
"""

from absl import logging
import tensorflow as tf

from tf2.checkpoints import files as checkpoint_files
from tf2.checkpoints import restore as checkpoint_restore
from tf2.runtime import fileio
from tf2.training import memory_buffer
from tf2.runtime import precision


class SaveError(RuntimeError):
  """A checkpoint could not be written; the message says why and what to do."""


# Damaged checkpoints already reported by this process: a run looks for its
# checkpoint more than once (architecture, then resume) and says it once.
_REPORTED_DAMAGED = set()


def newest_complete_checkpoint(model_dir):
  """The newest checkpoint of model_dir that opens whole, or None.

  Opening reads the index and the end of the data file, which catches a
  missing or truncated data file; damaged newer checkpoints are logged and
  passed over.

  Raises:
    checkpoint_files.CheckpointError: there are checkpoints, none whole.
  """
  if not model_dir or not fileio.isdir(model_dir):
    return None
  state = tf.train.get_checkpoint_state(model_dir)
  paths = list(state.all_model_checkpoint_paths) if state else []
  damaged = []
  for path in reversed(paths):
    if not fileio.exists(path + '.index'):  # Written elsewhere, then moved.
      path = fileio.join(model_dir, fileio.basename(path))
    try:
      checkpoint_files.open_checkpoint(path)
    except checkpoint_files.CheckpointError as e:
      if path not in _REPORTED_DAMAGED:
        logging.warning('Passing over the damaged checkpoint %s: %s', path,
                        e)
        _REPORTED_DAMAGED.add(path)
      damaged.append(path)
      continue
    return path
  if damaged:
    raise checkpoint_files.CheckpointError(
        f'--model_dir={model_dir}: no checkpoint of it can be read '
        f'({", ".join(damaged)} are damaged). Move them away to train from '
        'the start, or copy the model_dir again.')
  return None


class CheckpointState:
  """Model, global step and optimizer, saved to and resumed from model_dir.

  Args:
    model: the Model being trained.
    optimizer: its optimizer (its `iterations` is the global step); a
      LossScaleOptimizer is saved as its inner optimizer plus `loss_scale`
      (precision.checkpoint_objects), so the keys are a float32 run's.
    model_dir: where checkpoints go.
    keep_checkpoint_max: checkpoints kept (older ones are deleted).
    memory: the MemoryBuffer of pretraining with a memory, or None.
    save_dir: on a cluster's non-chief worker, where its saves go (each is
      removed once written: every worker must take part in a save, only the
      chief's is kept); None saves into model_dir.
  """

  def __init__(self, model, optimizer, model_dir, keep_checkpoint_max,
               memory=None, save_dir=None):
    self.model = model
    self.optimizer = optimizer
    self.memory = memory
    self.model_dir = model_dir
    objects = dict(model=model, global_step=optimizer.iterations,
                   **precision.checkpoint_objects(optimizer))
    if memory is not None:
      objects['memory'] = memory
    self.checkpoint = tf.train.Checkpoint(**objects)
    self.save_dir = save_dir
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory=save_dir or model_dir,
        max_to_keep=keep_checkpoint_max)

  @property
  def global_step(self):
    return self.optimizer.iterations

  def restore_or_initialize(self, init_checkpoint=None, use_ema=False,
                            zero_init_logits_layer=False):
    """Resumes from model_dir, else starts from `init_checkpoint` weights.

    Resuming restores weights, step and optimizer state from the newest
    complete checkpoint, after checking that its architecture is this
    model's (so a run with other flags stops instead of overwriting the
    checkpoint). Starting from another checkpoint restores model weights
    only, as published, optionally zeroing the supervised head.

    Returns:
      A line saying where the weights came from.
    """
    latest = newest_complete_checkpoint(self.model_dir)
    if latest:
      checkpoint_restore.verify_matches_model(self.model, latest)
      try:
        self.checkpoint.restore(latest).expect_partial()
      except tf.errors.OpError as e:
        raise checkpoint_files.CheckpointError(
            f'{latest}: reading it failed ({str(e).splitlines()[0][:200]}). '
            'Move it away to resume from the checkpoint before it.') from None
      step = int(self.global_step.numpy())
      message = f'Resumed from {latest} at step {step}.'
      newest = tf.train.latest_checkpoint(self.model_dir)
      if latest != newest:
        message += (f' (The newer {newest} is damaged and will be '
                    'overwritten.)')
      if self.memory is not None and not memory_buffer.checkpoint_has_memory(
          latest):
        self.memory.initialize_from(self.model)
        message += ' The memory buffer starts empty (none was saved).'
      return message
    message = 'Starting from freshly initialised weights.'
    if init_checkpoint:
      report = checkpoint_restore.restore_model_weights(
          self.model, init_checkpoint, use_ema=use_ema)
      message = f'Initialised from {init_checkpoint}: {report.summary()}'
    if zero_init_logits_layer and self.model.supervised_head is not None:
      for variable in self.model.supervised_head.trainable_weights:
        variable.assign(tf.zeros_like(variable))
      message += ' Supervised head set to zero.'
    if self.memory is not None:
      self.memory.initialize_from(self.model)
    return message

  def save(self):
    """Saves at the current step; returns the checkpoint's prefix.

    Raises:
      SaveError: the write failed (e.g. no space left); the files of this
        save were removed, the earlier checkpoints are untouched.
    """
    step = int(self.global_step.numpy())
    try:
      path = self.manager.save(checkpoint_number=step)
    except (tf.errors.OpError, OSError) as e:
      prefix = fileio.join(self.save_dir or self.model_dir, f'ckpt-{step}')
      for debris in fileio.glob(prefix + '.*') + fileio.glob(prefix + '_temp*'):
        if fileio.isdir(debris):
          fileio.rmtree(debris)
        else:
          fileio.gfile.remove(debris)
      detail = fileio.storage_problem(e) or (
          str(e).strip().splitlines() or [type(e).__name__])[0][:200]
      raise SaveError(
          f'Saving the checkpoint of step {step} in {self.model_dir} failed '
          f'({detail}); its partial files were removed and the earlier '
          'checkpoints are kept. Free some space (or fix the permissions) '
          'and run the same command again to resume.') from None
    if self.save_dir is not None:
      fileio.rmtree(self.save_dir)
      return None
    return path

  @property
  def latest_checkpoint(self):
    """The newest checkpoint this process saved in model_dir, or None."""
    return None if self.save_dir else self.manager.latest_checkpoint
