"""Finds and opens SimCLR checkpoints of every published format.

Three formats hold the same weights under different names:

- `tf2_checkpoint`: `tf.train.Checkpoint(model=...)` files (`ckpt-<step>`,
  or a directory whose `checkpoint` file names the latest). Variables are
  keyed by their object-graph path, `model/resnet_model/...`
  (object_graph.py).
- `saved_model`: a SavedModel directory, whose `variables/` is a TF2
  checkpoint holding the model under the same `model/...` paths. TF1 hub
  modules keep TF1 names.
- `tf1_checkpoint`: the TF1 graph code's `model.ckpt-<step>`, with TF1
  names such as `base_model/conv2d_7/kernel`, optimizer slots,
  `global_step` and, for SimCLRv2, `ema_model/` copies (tf1_mapping.py).

Files are reached through `fileio` (tf.io.gfile) and tensors through
TensorFlow's own checkpoint reader, so any filesystem TensorFlow supports
works (local, gs://, ram://). What the reader raises becomes one
`CheckpointError` whose message names the path, the problem and the fix. A
damaged index, a missing data file and a data file cut short are refused
when the checkpoint is opened (`open_checkpoint`); bytes corrupted inside a
data file, or a missing later shard, when the damaged value is read.
"""

import dataclasses
import re

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2
from tensorflow.python.training import py_checkpoint_reader

from tf2.checkpoints import object_graph
from tf2.checkpoints import tf1_mapping
from tf2.runtime import fileio

FORMATS = ('tf2_checkpoint', 'saved_model', 'tf1_checkpoint')
USAGE = ('Pass a TF2 checkpoint prefix (.../ckpt-1000) or its directory, a '
         'SavedModel directory (holding saved_model.pb and variables/), or a '
         'TF1 checkpoint prefix (.../model.ckpt-250228).')
COPY_AGAIN = 'Download or copy the checkpoint again.'
_COPY_DATA = ('Copy the .data-* files that belong to the index into the same '
              'directory.')
# The reader raises these for unreadable files (IndexError: a read past the
# end of a data file).
_READ_ERRORS = (tf.errors.OpError, IndexError, ValueError, RuntimeError)


class CheckpointError(ValueError):
  """A checkpoint is missing, damaged or does not fit the model."""


def checkpoint_error(path, problem, fix=USAGE):
  """A CheckpointError saying `<path>: <problem> <fix>`."""
  return CheckpointError(f'{path}: {problem} {fix}'.strip())


def _first_line(error):
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _read_error(path, prefix, key, error):
  """The CheckpointError for what the reader raised while reading `key`."""
  detail = _first_line(error)
  if isinstance(error, tf.errors.NotFoundError) or 'No such file' in detail:
    return checkpoint_error(
        path, f'the index {prefix}.index has no data file ({detail}).',
        _COPY_DATA)
  if isinstance(error, IndexError) or 'less bytes' in detail:
    return checkpoint_error(
        path, f'the data file is truncated: reading {key} ran past its end '
        f'({detail}).', COPY_AGAIN)
  return checkpoint_error(path, f'reading {key} failed: the data file is '
                          f'corrupted ({detail}).', COPY_AGAIN)


# ---------------------------------------------------------------- paths


def listed_checkpoints(directory):
  """The prefixes a directory's `checkpoint` file lists, oldest first.

  A state file holds its writer's paths (published TF1 ones are absolute,
  often gs://; a model_dir may have been copied), so a listed checkpoint
  that is not where it is named is taken from beside the state file. Names
  found nowhere stay as named. Only the state file is read.
  """
  if not directory or not fileio.isdir(directory):
    return []
  state = tf.train.get_checkpoint_state(directory)
  if state is None:
    return []
  named = list(state.all_model_checkpoint_paths)
  if state.model_checkpoint_path and (
      not named or named[-1] != state.model_checkpoint_path):
    named.append(state.model_checkpoint_path)
  found = []
  for prefix in named:
    beside = fileio.join(directory, fileio.basename(prefix))
    if not fileio.exists(prefix + '.index') and fileio.exists(
        beside + '.index'):
      prefix = beside
    found.append(prefix)
  return found


def _latest_in_directory(directory, path):
  """The newest prefix a directory's `checkpoint` file names, if there."""
  listed = listed_checkpoints(directory)
  if listed and fileio.exists(listed[-1] + '.index'):
    return listed[-1]
  found = sorted(f[:-len('.index')] for f in fileio.listdir(directory)
                 if f.endswith('.index'))
  hint = USAGE
  if found:
    hint = f'Pass a prefix: {fileio.join(directory, found[-1])}.'
  raise checkpoint_error(
      path, 'its `checkpoint` file names '
      f'{listed[-1] if listed else "no checkpoint"}, which is not '
      'there.', hint)


def _resolve_directory(path):
  """(format or None, bundle prefix) that a directory stands for."""
  if fileio.exists(fileio.join(path, 'checkpoint')):
    return None, _latest_in_directory(path, path)
  if any(fileio.exists(fileio.join(path, f))
         for f in ('saved_model.pb', 'saved_model.pbtxt')):
    prefix = fileio.join(path, 'variables', 'variables')
    if not fileio.exists(prefix + '.index'):
      raise checkpoint_error(
          path, 'this SavedModel has no variables (variables/variables.index '
          'is missing).', 'Copy the whole SavedModel directory, including '
          'variables/.')
    return 'saved_model', prefix
  if fileio.exists(fileio.join(path, 'saved_model', 'saved_model.pb')):
    # The published TF2 models sit in <architecture>/saved_model/.
    return _resolve_directory(fileio.join(path, 'saved_model'))
  raise checkpoint_error(path, 'this directory holds no `checkpoint` file '
                         'and no saved_model.pb.')


def _resolve(path):
  """(format or None, bundle prefix) of a checkpoint path.

  The format is None when only the bundle's contents can tell (a TF2 or a
  TF1 checkpoint).
  """
  # A path to one of the prefix's files means the prefix.
  stripped = re.sub(r'\.(index|meta|data-\d+-of-\d+)$', '', path)
  if stripped != path and fileio.exists(stripped + '.index'):
    path = stripped
  # The index first: ram:// takes any prefix of a file name for a directory.
  if fileio.exists(path + '.index'):
    return None, path
  if fileio.isdir(path):
    return _resolve_directory(path)
  if fileio.exists(path):
    raise checkpoint_error(path, 'this file is not a checkpoint.')
  raise checkpoint_error(path, 'no such file, directory or checkpoint '
                         'prefix.')


# -------------------------------------------------------------- reading


@dataclasses.dataclass
class OpenedCheckpoint:
  """A checkpoint whose index was read.

  Attributes:
    path: the path as given.
    format: one of FORMATS.
    prefix: the bundle prefix (`.../ckpt-5`, `.../variables/variables`).
    naming: 'object_graph' (TF2 checkpoints and SavedModels) or 'tf1'.
    reader: TensorFlow's CheckpointReader of the bundle.
    shapes: {tensor key: shape} of every tensor but the object graph.
  """
  path: str
  format: str
  prefix: str
  naming: str
  reader: object
  shapes: dict

  def read(self, tensor_key):
    """The value of one tensor; CheckpointError if the files are damaged."""
    try:
      return self.reader.get_tensor(tensor_key)
    except _READ_ERRORS as e:
      raise _read_error(self.path, self.prefix, tensor_key, e) from None

  @property
  def has_ema(self):
    return any(k.startswith(tf1_mapping.EMA_PREFIX) for k in self.shapes)

  def global_step(self):
    """The stored step, or None."""
    for name in ('global_step', 'global_step' + object_graph.VALUE_SUFFIX):
      if name in self.shapes:
        return int(self.read(name))
    return None

  def model_values(self):
    """{model name: tensor key} of the raw model weights.

    Names are object-graph keys (`model/...`) or TF1 names; the step,
    optimizer slots and EMA copies are left out.
    """
    if self.naming == 'tf1':
      return {k: k for k in self.shapes if tf1_mapping.is_model_weight(k)}
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        self.read(object_graph.OBJECT_GRAPH_KEY))
    roots = object_graph.root_objects(graph)
    if object_graph.MODEL_ROOT not in roots:
      raise checkpoint_error(
          self.path, 'this TF2 checkpoint holds no `model` object (it has '
          f'{sorted(roots)}), so it was not written by SimCLR.',
          'Pass a checkpoint written by run.py or a published SimCLR model.')
    return object_graph.saved_variable_keys(
        graph, roots[object_graph.MODEL_ROOT])

  def model_shapes(self):
    """{model name: shape} of the raw model weights."""
    return {name: self.shapes[key]
            for name, key in self.model_values().items()}


def _open_reader(prefix, path):
  try:
    return py_checkpoint_reader.NewCheckpointReader(prefix)
  except _READ_ERRORS as e:
    raise checkpoint_error(
        path, f'{prefix}.index is not a readable checkpoint index '
        f'({_first_line(e)}).', COPY_AGAIN) from None


def open_checkpoint(path):
  """Opens the checkpoint at `path` (see `detect_format`) for reading.

  An OpenedCheckpoint is returned as it is, so that functions reading a
  checkpoint take either (a run opens its start checkpoint once).

  The values that writers put last in the data file are read at once, so
  that an index without its data file, and a data file cut short (an
  interrupted download), are refused here rather than after a model was
  built. Other damage shows when the damaged value is read.

  Raises:
    CheckpointError: no checkpoint there, a damaged index, a missing or
      truncated data file, or a SavedModel without variables.
  """
  if isinstance(path, OpenedCheckpoint):
    return path
  path = str(path)
  fmt, prefix = _resolve(path)
  reader = _open_reader(prefix, path)
  shapes = {k: tuple(s) for k, s in reader.get_variable_to_shape_map().items()}
  naming = 'object_graph' if object_graph.OBJECT_GRAPH_KEY in shapes else 'tf1'
  # Writers put the object graph (TF2) or the name that sorts last (TF1's
  # Saver writes names sorted) at the end of the data file.
  probes = sorted(shapes)[-1:]
  if naming == 'object_graph':
    probes.append(object_graph.OBJECT_GRAPH_KEY)
  shapes.pop(object_graph.OBJECT_GRAPH_KEY, None)
  if fmt is None:
    fmt = 'tf2_checkpoint' if naming == 'object_graph' else 'tf1_checkpoint'
  opened = OpenedCheckpoint(path, fmt, prefix, naming, reader, shapes)
  for key in probes:
    opened.read(key)
  return opened


def detect_format(path):
  """One of FORMATS, after checking that the checkpoint can be opened.

  Args:
    path: a TF2 prefix or directory, a SavedModel directory, or a TF1 prefix
      (a path to one of its `.index` / `.data-*` / `.meta` files also works),
      on any filesystem TensorFlow supports.

  Raises:
    CheckpointError: see `open_checkpoint`.
  """
  return open_checkpoint(path).format


def variable_shapes(path):
  """{tensor key: shape} of every tensor in a checkpoint (no value read)."""
  return dict(open_checkpoint(path).shapes)
