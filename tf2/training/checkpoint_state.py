"""What a training run saves in model_dir, and how it resumes from it.

The object names (`model`, `global_step`, `optimizer`) are those of the
reference, so its model_dir checkpoints resume here and ours there. With a
memory buffer, its moving-average model and queue are saved too (under
`memory`), so a resumed run continues exactly.

A run resumes from the newest complete checkpoint of model_dir
(`checkpoints/start.py`, where damaged ones are passed over). A save that
fails (no space left) removes what it half-wrote before reporting, so a full
disk is not kept full by debris.
"""

import tensorflow as tf

from tf2.checkpoints import files as checkpoint_files
from tf2.checkpoints import restore as checkpoint_restore
from tf2.checkpoints import start as start_lib
from tf2.runtime import fileio
from tf2.runtime import precision
from tf2.training import memory_buffer


class SaveError(RuntimeError):
  """A checkpoint could not be written; the message says why and what to do."""


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
                            zero_init_logits_layer=False, start=None):
    """Resumes from model_dir, else starts from `init_checkpoint` weights.

    Resuming restores weights, step and optimizer state from the newest
    complete checkpoint, after checking that its architecture is this
    model's (so a run with other flags stops instead of overwriting the
    checkpoint). Starting from another checkpoint restores model weights
    only, as published, optionally zeroing the supervised head.

    Args:
      init_checkpoint: `--checkpoint`, used when model_dir has none.
      use_ema: start from a TF1 checkpoint's moving-average weights.
      zero_init_logits_layer: zero the supervised head when starting.
      start: the `start.StartCheckpoint` the run already found and opened
        (runner.prepare); None finds it here.

    Returns:
      A line saying where the weights came from.
    """
    if start is None:
      start = start_lib.find_start(self.model_dir, init_checkpoint)
    if start.resume:
      return self._resume(start)
    message = 'Starting from freshly initialised weights.'
    if start.checkpoint is not None:
      report = checkpoint_restore.restore_model_weights(
          self.model, start.checkpoint, use_ema=use_ema)
      message = f'Initialised from {start.path}: {report.summary()}'
    if zero_init_logits_layer and self.model.supervised_head is not None:
      for variable in self.model.supervised_head.trainable_weights:
        variable.assign(tf.zeros_like(variable))
      message += ' Supervised head set to zero.'
    if self.memory is not None:
      self.memory.initialize_from(self.model)
    return message

  def _resume(self, start):
    opened = start.checkpoint
    checkpoint_restore.verify_matches_model(self.model, opened)
    try:
      self.checkpoint.restore(opened.prefix).expect_partial()
    except tf.errors.OpError as e:
      raise checkpoint_files.CheckpointError(
          f'{opened.path}: reading it failed '
          f'({str(e).splitlines()[0][:200]}). Move it away to resume from '
          'the checkpoint before it.') from None
    step = int(self.global_step.numpy())
    message = f'Resumed from {opened.path} at step {step}.'
    if start.passed_over:
      message += (f' (The newer {", ".join(start.passed_over)} is damaged '
                  'and will be overwritten.)')
    if self.memory is not None and not memory_buffer.checkpoint_has_memory(
        opened):
      self.memory.initialize_from(self.model)
      message += ' The memory buffer starts empty (none was saved).'
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
    """The newest checkpoint this process saved in model_dir, or None.

    Not a directory lookup: only what this state's manager wrote (a
    non-chief worker's saves are removed, so it has none).
    """
    return None if self.save_dir else self.manager.latest_checkpoint
