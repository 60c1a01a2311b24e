"""The checkpoint a training run starts from, found and opened once.

A run resumes from the newest complete checkpoint of its model_dir (weights,
step, optimizer state), else starts from `--checkpoint`'s model weights,
else from fresh weights. Finding it is the one place that opens checkpoints
of a model_dir: the architecture check, the resume and the report all use
the `StartCheckpoint` found here (carried by the prepared run), so each
checkpoint is opened once and a damaged one is reported once.

A checkpoint is complete or absent for a resumed run (Orbax's promise): the
newest is opened whole (index and the end of its data file) before it is
used; a damaged one (a truncated copy, a disk that filled up) is passed over
for the newest complete one, and the run says so.
"""

import dataclasses
from typing import Optional

from absl import logging

from tf2.checkpoints import files as checkpoint_files


@dataclasses.dataclass(frozen=True)
class StartCheckpoint:
  """Where a training run's weights come from.

  Attributes:
    checkpoint: the opened checkpoint (`files.OpenedCheckpoint`), or None
      for fresh weights.
    resume: True when it is model_dir's own (restore everything), False for
      `--checkpoint` (model weights only).
    passed_over: {path: why} of newer checkpoints of model_dir that are
      damaged (they will be overwritten).
  """
  checkpoint: Optional[checkpoint_files.OpenedCheckpoint] = None
  resume: bool = False
  passed_over: dict = dataclasses.field(default_factory=dict)

  @property
  def path(self):
    return self.checkpoint.path if self.checkpoint is not None else None


def newest_complete(directory):
  """(newest checkpoint of `directory` that opens whole, {damaged: why}).

  The answer to "the newest complete checkpoint of a directory", for every
  caller. The first element is an OpenedCheckpoint, or None when the
  directory holds no checkpoint.

  Raises:
    files.CheckpointError: there are checkpoints, none whole.
  """
  damaged = {}
  for path in reversed(checkpoint_files.listed_checkpoints(directory)):
    try:
      return checkpoint_files.open_checkpoint(path), damaged
    except checkpoint_files.CheckpointError as e:
      damaged[path] = str(e)
  if damaged:
    raise checkpoint_files.CheckpointError(
        f'--model_dir={directory}: no checkpoint of it can be read '
        f'({", ".join(damaged)} are damaged). Move them away to train from '
        'the start, or copy the model_dir again.')
  return None, damaged


def find_start(model_dir, init_checkpoint=None):
  """The StartCheckpoint of a training run into model_dir.

  Args:
    model_dir: the run's model_dir (may not exist yet).
    init_checkpoint: `--checkpoint`, used when model_dir has none.

  Raises:
    files.CheckpointError: model_dir's checkpoints are all damaged, or
      init_checkpoint cannot be opened.
  """
  opened, damaged = newest_complete(model_dir)
  for path, why in damaged.items():
    logging.warning('Passing over the damaged checkpoint %s: %s', path, why)
  if opened is not None:
    return StartCheckpoint(opened, resume=True, passed_over=damaged)
  if init_checkpoint:
    return StartCheckpoint(checkpoint_files.open_checkpoint(init_checkpoint))
  return StartCheckpoint()
