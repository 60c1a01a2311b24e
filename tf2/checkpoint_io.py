"""Reads SimCLR checkpoints of every published format into a model.

Three formats hold the same weights under different names:

- `tf2_checkpoint`: `tf.train.Checkpoint(model=...)` files (`ckpt-<step>`,
  or a directory whose `checkpoint` file names the latest). Variables are
  found by their object-graph path, `model/resnet_model/...`.
- `saved_model`: a SavedModel directory. Its `variables/` is a TF2
  checkpoint in which the model sits under the same `model/...` path (the
  tensors themselves may be stored under other keys, such as
  `trainable_variables_list/3`, so paths are followed through the saved
  object graph, never guessed from keys). TF1 hub modules keep TF1 names.
- `tf1_checkpoint`: the TF1 graph code's `model.ckpt-<step>`, with names
  such as `base_model/conv2d_7/kernel`, optimizer slots (`.../Momentum`),
  `global_step` and, for SimCLRv2, an exponential moving average of the
  weights under `ema_model/`. It maps onto the model by creation order
  (`tf1_mapping.py`).

Every entry point checks the files first and raises `CheckpointError`, whose
message names the path, the problem and the fix. Restoring fills model
weights only (never the step or optimizer state), requires every variable to
be filled with a value of its shape, and reports what it left out.
"""

import collections
import dataclasses
import os
import re
import struct

from google.protobuf import message
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import tensor_bundle_pb2
from tensorflow.core.protobuf import trackable_object_graph_pb2

from tf2 import config as config_lib
from tf2 import model as model_lib
from tf2 import resnet
from tf2 import tf1_mapping

FORMATS = ('tf2_checkpoint', 'saved_model', 'tf1_checkpoint')
EMA_PREFIX = 'ema_model/'

_OBJECT_GRAPH_KEY = '_CHECKPOINTABLE_OBJECT_GRAPH'
_VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'
_USAGE = ('Pass a TF2 checkpoint prefix (.../ckpt-1000) or its directory, a '
          'SavedModel directory (holding saved_model.pb and variables/), or a '
          'TF1 checkpoint prefix (.../model.ckpt-250228).')
# Children that SavedModels add to every Keras layer beside its attributes;
# paths through them are aliases, not the object-graph path of a variable.
_SAVED_MODEL_ALIASES = frozenset({
    'keras_api', 'variables', 'trainable_variables',
    'non_trainable_variables', 'regularization_losses', 'metrics',
    'layer_regularization_losses', 'layer_metrics'})
# TF1 names that are no model weights: the step and optimizer slots.
_TF1_BOOKKEEPING = re.compile(
    r'^global_step$|/(Momentum|Adam|Adam_1|LARSOptimizer)(_\d+)?$|'
    r'^beta[12]_power(_\d+)?$')
_TRAINABLE_LEAVES = ('kernel', 'bias', 'gamma', 'beta')


class CheckpointError(ValueError):
  """A checkpoint is missing, damaged or does not fit the model."""


def _error(path, problem, fix=_USAGE):
  return CheckpointError(f'{path}: {problem} {fix}'.strip())


@dataclasses.dataclass
class RestoreReport:
  """What a restore did.

  Attributes:
    path: the checkpoint as given.
    format: one of FORMATS.
    filled: model variables that received a value (TF1 names for a TF1
      checkpoint, object-graph keys otherwise).
    missing: model variables left as they were (only expected ones: a head
      the checkpoint lacks or has with another number of classes).
    unused: checkpoint values not used (step, optimizer slots, the other
      EMA copy, a replaced head).
    notes: one line per expected miss, saying why.
  """
  path: str
  format: str
  filled: list = dataclasses.field(default_factory=list)
  missing: list = dataclasses.field(default_factory=list)
  unused: list = dataclasses.field(default_factory=list)
  notes: list = dataclasses.field(default_factory=list)

  def summary(self):
    kinds = collections.Counter(_kind_of_unused(n) for n in self.unused)
    unused = ', '.join(f'{count} {kind}' for kind, count in sorted(
        kinds.items())) or 'nothing'
    notes = ''.join(f' {note}' for note in self.notes)
    return (f'restored {len(self.filled)} variables from {self.format} '
            f'{self.path}; left {len(self.missing)} as initialised; '
            f'ignored {unused}.{notes}')


def _kind_of_unused(name):
  if name.startswith(EMA_PREFIX):
    return 'EMA copies'
  if 'global_step' in name or name == 'save_counter' + _VALUE_SUFFIX:
    return 'step counters'
  if '.OPTIMIZER_SLOT' in name or name.startswith('optimizer/') or (
      _TF1_BOOKKEEPING.search(name)):
    return 'optimizer values'
  if _part(name) == 'supervised':
    return 'values of the replaced supervised head'
  return 'raw weights (the EMA copy was used)'


# ---------------------------------------------------------------- files


def _varint(buffer, pos):
  result = shift = 0
  while True:
    byte = buffer[pos]
    pos += 1
    result |= (byte & 0x7f) << shift
    shift += 7
    if not byte & 0x80:
      return result, pos


def _table_block(data, handle):
  """Yields (key, value) of one uncompressed LevelDB table block."""
  offset, pos = _varint(handle, 0)
  size, _ = _varint(handle, pos)
  if data[offset + size] != 0:
    raise ValueError('compressed block')
  block = data[offset:offset + size]
  num_restarts = struct.unpack('<I', block[-4:])[0]
  end = len(block) - 4 * (num_restarts + 1)
  pos, key = 0, b''
  while pos < end:
    shared, pos = _varint(block, pos)
    unshared, pos = _varint(block, pos)
    length, pos = _varint(block, pos)
    key = key[:shared] + block[pos:pos + unshared]
    pos += unshared
    yield key, block[pos:pos + length]
    pos += length


def _bundle_extents(index_path):
  """(num_shards, [(key, shard, end offset)]) from a checkpoint index.

  The index is a LevelDB table of BundleEntryProtos; reading it directly
  tells how many bytes each data shard must hold without reading the data,
  which is how truncated downloads are caught before any weight is used.
  """
  with open(index_path, 'rb') as f:
    data = f.read()
  footer = data[-48:]
  if len(data) < 48 or footer[-8:] != struct.pack('<Q', 0xdb4775248b80fb57):
    raise ValueError('no table footer')
  _, pos = _varint(footer, 0)
  _, pos = _varint(footer, pos)
  index_handle = footer[:40][pos:]
  num_shards, extents = 1, []
  for _, handle in _table_block(data, index_handle):
    for key, value in _table_block(data, handle):
      if not key:
        header = tensor_bundle_pb2.BundleHeaderProto.FromString(value)
        num_shards = header.num_shards
        continue
      entry = tensor_bundle_pb2.BundleEntryProto.FromString(value)
      extents.append((key.decode(), entry.shard_id, entry.offset + entry.size))
  return num_shards, extents


def _check_bundle(prefix, path):
  """The tensor keys of a checkpoint whose index and data shards are whole.

  Raises:
    CheckpointError: an unreadable index, a missing or truncated data file.
  """
  index = prefix + '.index'
  try:
    num_shards, extents = _bundle_extents(index)
  except (ValueError, IndexError, OSError, struct.error,
          message.DecodeError) as e:
    raise _error(path, f'{index} is not a readable checkpoint index ({e}).',
                 'Download or copy the checkpoint again.') from None
  sizes = {}
  for shard in range(num_shards):
    data_file = f'{prefix}.data-{shard:05d}-of-{num_shards:05d}'
    if not os.path.exists(data_file):
      raise _error(path, f'the index {index} has no data file {data_file}.',
                   'Copy the .data-* files that belong to the index into the '
                   'same directory.')
    sizes[shard] = os.path.getsize(data_file)
  for key, shard, end in extents:
    if end > sizes.get(shard, 0):
      raise _error(
          path, f'the data file of shard {shard} is truncated: it has '
          f'{sizes.get(shard, 0)} bytes but {key} ends at byte {end}.',
          'Download or copy the checkpoint again.')
  return {key for key, _, _ in extents}


def _latest_in_directory(directory, path):
  """The prefix a directory's `checkpoint` file names, checked to exist."""
  state = tf.train.get_checkpoint_state(directory)
  candidates = []
  if state is not None and state.model_checkpoint_path:
    # Published TF1 state files hold the writer's absolute (often gs://)
    # path, so look for the named checkpoint beside the state file too.
    named = state.model_checkpoint_path
    candidates = [named, os.path.join(directory, os.path.basename(named))]
  for prefix in candidates:
    if os.path.exists(prefix + '.index'):
      return prefix
  found = sorted(f[:-len('.index')] for f in os.listdir(directory)
                 if f.endswith('.index'))
  hint = _USAGE
  if found:
    hint = f'Pass a prefix: {os.path.join(directory, found[-1])}.'

  raise _error(path, 'its `checkpoint` file names '
               f'{candidates[0] if candidates else "no checkpoint"}, which is '
               'not there.', hint)


def _resolve_directory(path):
  """The bundle prefix (and format, for SavedModels) a directory stands for."""
  if os.path.exists(os.path.join(path, 'checkpoint')):
    return _latest_in_directory(path, path), None
  if any(os.path.exists(os.path.join(path, f))
         for f in ('saved_model.pb', 'saved_model.pbtxt')):
    prefix = os.path.join(path, 'variables', 'variables')
    if not os.path.exists(prefix + '.index'):
      raise _error(path, 'this SavedModel has no variables '
                   '(variables/variables.index is missing).',
                   'Copy the whole SavedModel directory, including '
                   'variables/.')
    return prefix, 'saved_model'
  if os.path.exists(os.path.join(path, 'saved_model', 'saved_model.pb')):
    # The published TF2 models sit in <architecture>/saved_model/.
    return _resolve_directory(os.path.join(path, 'saved_model'))
  raise _error(path, 'this directory holds no `checkpoint` file and no '
               'saved_model.pb.')


def _resolve(path):
  """(format, bundle prefix, naming) of a checkpoint path, after checks.

  naming is 'object_graph' (TF2 checkpoints and SavedModels) or 'tf1'
  (TF1 checkpoints and TF1 hub modules).
  """
  path = os.fspath(path)
  # A path to one of the prefix's files means the prefix.
  stripped = re.sub(r'\.(index|meta|data-\d+-of-\d+)$', '', path)
  if stripped != path and os.path.exists(stripped + '.index'):
    path = stripped
  fmt = None
  if os.path.isdir(path):
    prefix, fmt = _resolve_directory(path)
  elif os.path.exists(path + '.index'):
    prefix = path
  elif os.path.exists(path):
    raise _error(path, 'this file is not a checkpoint.')
  else:
    raise _error(path, 'no such file, directory or checkpoint prefix.')
  keys = _check_bundle(prefix, path)
  naming = 'object_graph' if _OBJECT_GRAPH_KEY in keys else 'tf1'
  if fmt is None:
    fmt = 'tf2_checkpoint' if naming == 'object_graph' else 'tf1_checkpoint'
  return fmt, prefix, naming


def detect_format(path):
  """Returns one of FORMATS after checking that the files are complete.

  Args:
    path: a TF2 prefix or directory, a SavedModel directory, or a TF1 prefix
      (a path to one of its `.index` / `.data-*` / `.meta` files also works).

  Raises:
    CheckpointError: no checkpoint there, an index without its data file, a
      truncated data file or a SavedModel without variables. (Corrupted
      bytes in a data file of the right size are caught when reading.)
  """
  return _resolve(path)[0]


# ---------------------------------------------------------- object graphs


def _escape(name):
  return name.replace('.', '..').replace('/', '.S')


def checkpoint_keys(model):
  """{key: variable} that `tf.train.Checkpoint(model=model)` would write.

  Keys are the breadth-first object-graph paths TensorFlow uses, such as
  `model/resnet_model/block_groups/0/layers/0/.../kernel/.ATTRIBUTES/
  VARIABLE_VALUE`; nothing is written.
  """
  root = tf.train.Checkpoint(model=model)
  queue = collections.deque([(root, ())])
  seen = {id(root)}
  keys = {}
  while queue:
    node, path = queue.popleft()
    for name, child in tf.train.TrackableView.children(node).items():
      if id(child) in seen:
        continue
      seen.add(id(child))
      child_path = path + (_escape(name),)
      if isinstance(child, tf.Variable):
        keys['/'.join(child_path) + _VALUE_SUFFIX] = child
      else:
        queue.append((child, child_path))
  return keys


def _object_graph_values(reader, path):
  """{model key: tensor key} of every variable under the root's `model`."""
  graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
      reader.get_tensor(_OBJECT_GRAPH_KEY))
  roots = {c.local_name: c.node_id for c in graph.nodes[0].children}
  if 'model' not in roots:
    raise _error(path, 'this TF2 checkpoint holds no `model` object (it has '
                 f'{sorted(roots)}), so it was not written by SimCLR.',
                 'Pass a checkpoint written by run.py or a published SimCLR '
                 'model.')
  values, found = {}, set()
  # Canonical paths first; aliases only for variables reachable no other way.
  for skip in (_SAVED_MODEL_ALIASES, frozenset()):
    queue = collections.deque([(roots['model'], 'model')])
    seen = {roots['model']}
    while queue:
      node_id, node_path = queue.popleft()
      for child in graph.nodes[node_id].children:
        if child.local_name in skip or child.node_id in seen:
          continue
        seen.add(child.node_id)
        child_path = f'{node_path}/{_escape(child.local_name)}'
        attributes = {a.name: a.checkpoint_key
                      for a in graph.nodes[child.node_id].attributes}
        if 'VARIABLE_VALUE' in attributes:
          tensor_key = attributes['VARIABLE_VALUE']
          if tensor_key not in found:
            found.add(tensor_key)
            values[child_path + _VALUE_SUFFIX] = tensor_key
        else:
          queue.append((child.node_id, child_path))
  return values


@dataclasses.dataclass
class _Source:
  """An opened, checked checkpoint."""
  path: str
  format: str
  prefix: str
  naming: str  # 'object_graph' or 'tf1'
  reader: object
  shapes: dict  # every tensor key -> shape

  @classmethod
  def open(cls, path):
    fmt, prefix, naming = _resolve(path)
    try:
      reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
      raise _error(path, f'cannot read the checkpoint ({e}).',
                   'Download or copy the checkpoint again.') from None
    shapes = {k: tuple(s) for k, s in
              reader.get_variable_to_shape_map().items()
              if k != _OBJECT_GRAPH_KEY}
    return cls(os.fspath(path), fmt, prefix, naming, reader, shapes)

  @property
  def has_ema(self):
    return any(k.startswith(EMA_PREFIX) for k in self.shapes)

  def model_values(self, use_ema=False):
    """{model name: tensor key}: object-graph keys or TF1 names."""
    if self.naming == 'object_graph':
      if use_ema:
        raise _error(self.path, f'--use_ema needs a TF1 checkpoint with an '
                     f'{EMA_PREFIX} copy, but this is a {self.format} with one '
                     'set of weights.', 'Leave --use_ema=False.')
      return _object_graph_values(self.reader, self.path)
    raw = {k: k for k in self.shapes
           if not k.startswith(EMA_PREFIX) and not _TF1_BOOKKEEPING.search(k)}
    if not use_ema:
      return raw
    if not self.has_ema:
      raise _error(self.path, f'--use_ema asks for the {EMA_PREFIX} weights '
                   'but this checkpoint has none.', 'Leave --use_ema=False.')
    averaged = {}
    for name in raw:
      if EMA_PREFIX + name in self.shapes:
        averaged[name] = EMA_PREFIX + name
      elif _part(name) == 'supervised':
        # The published checkpoints keep no average of the supervised head
        # (trained on a stopped gradient), so it comes from the raw copy.
        averaged[name] = name
      else:
        raise _error(self.path, f'--use_ema: the {EMA_PREFIX} copy lacks '
                     f'{name}.', 'Leave --use_ema=False to use the raw '
                     'weights.')
    return averaged

  def model_shapes(self):
    """{model name: shape} of the raw (non-EMA) model values."""
    return {name: self.shapes[key] for name, key in self.model_values().items()}

  def global_step(self):
    names = ['global_step', 'global_step' + _VALUE_SUFFIX]
    for name in names:
      if name in self.shapes:
        return int(self.reader.get_tensor(name))
    return None

  def read(self, tensor_key):
    try:
      return self.reader.get_tensor(tensor_key)
    except (tf.errors.OpError, IndexError, ValueError) as e:
      raise _error(self.path, f'reading {tensor_key} failed: the data file is '
                   f'corrupted ({str(e).splitlines()[0][:200]}).',
                   'Download or copy the checkpoint again.') from None


# ------------------------------------------------------------- restoring


def _part(name):
  """'supervised', 'projection' or 'encoder' for a TF1 name or a TF2 key."""
  if name.startswith(('model/supervised_head/',
                      tf1_mapping.SUPERVISED_SCOPE + '/')):
    return 'supervised'
  if name.startswith(('model/_projection_head/',
                      tf1_mapping.PROJECTION_SCOPE + '/')):
    return 'projection'
  return 'encoder'


def _targets(model, naming):
  """[(name in the checkpoint's naming, variable, TF2 key)], creation order."""
  keys = checkpoint_keys(model)
  key_of = {v.ref(): k for k, v in keys.items()}
  if naming == 'tf1':
    return [(name, v, key_of.get(v.ref(), name))
            for name, v in tf1_mapping.tf1_variable_map(model).items()]
  try:
    ordered = [key_of[v.ref()]
               for v in model_lib.variables_in_creation_order(model)]
  except (ValueError, KeyError):
    ordered = tf2_keys_in_creation_order(keys)
  return [(k, keys[k], k) for k in ordered]


def describe_architecture(arch):
  """One line describing a dict from `infer_architecture`.

  For example 'ResNet-50 2x, SK (sk_ratio=0.0625), ImageNet stem, 3-layer
  nonlinear projection head (128 out), 1000 classes'.
  """
  parts = [f'ResNet-{arch["resnet_depth"]} {arch["width_multiplier"]}x']
  if arch['sk_ratio']:
    parts.append(f'SK (sk_ratio={arch["sk_ratio"]})')
  if arch['se_ratio']:
    parts.append(f'SE (se_ratio={arch["se_ratio"]})')
  parts.append('CIFAR stem' if arch['cifar_stem'] else 'ImageNet stem')
  parts.append(f'{arch["num_proj_layers"]}-layer {arch["proj_head_mode"]} '
               f'projection head ({arch["proj_out_dim"]} out)'
               if arch['has_projection_head'] else 'no projection head')
  parts.append(f'{arch["num_classes"]} classes' if arch['has_supervised_head']
               else 'no supervised head')
  return ', '.join(parts)


def _mismatch_hint(source):
  try:
    arch = infer_architecture_from_shapes(source.model_shapes())
  except CheckpointError:
    return 'The architecture flags differ from the checkpoint\'s.'
  return (f'The checkpoint holds a {describe_architecture(arch)}; pass the '
          'matching architecture flags (or leave them at their defaults so that '
          'run.py infers them; checkpoints_tools/inspect_checkpoint.py '
          'prints them).')


def _excused_heads(targets, found, report):
  """Heads the model may keep as initialised; notes why in the report.

  A supervised head the checkpoint lacks or has for another number of
  classes (transfer to a new dataset), and a projection head it lacks
  (SimCLRv1 models).
  """
  excused = set()
  for part in ('supervised', 'projection'):
    names = [(n, tuple(v.shape)) for n, v, _ in targets if _part(n) == part]
    absent = all(n not in found for n, _ in names)
    unfit = all(found.get(n) != shape for n, shape in names)
    if names and (absent or (part == 'supervised' and unfit)):
      excused.add(part)
      report.notes.append(
          f'The model\'s {part} head was left as initialised: the '
          'checkpoint ' + ('has none.' if absent else 'has one of another '
                           'shape (another number of classes).'))
  return excused


def _match(model, source, use_ema, strict):
  """Pairs model variables with checkpoint values; raises on any misfit.

  Returns:
    (report, [(variable, tensor key)]).
  """
  values = source.model_values(use_ema)
  targets = _targets(model, source.naming)
  found = {n: source.shapes[values[n]] for n, _, _ in targets if n in values}
  report = RestoreReport(source.path, source.format)
  excused = set() if strict else _excused_heads(targets, found, report)
  pairs = []
  for name, variable, key in targets:
    if _part(name) in excused:
      report.missing.append(name)
      continue
    label = name if name == key else f'{name} (model key {key})'
    if name not in found:
      count = sum(n not in found and _part(n) not in excused
                  for n, _, _ in targets)
      raise _error(source.path, f'{count} model variables are not in the '
                   f'checkpoint, the first is {label} of shape '
                   f'{tuple(variable.shape)}.', _mismatch_hint(source))
    if found[name] != tuple(variable.shape):
      raise _error(source.path, f'the first mismatching variable is {label}: '
                   f'the model expects shape {tuple(variable.shape)} but the '
                   f'checkpoint has {found[name]}.', _mismatch_hint(source))
    report.filled.append(name)
    pairs.append((variable, values[name]))
  used = {values[n] for n in report.filled}
  for name, tensor_key in values.items():
    if tensor_key not in used and _part(name) not in excused:
      raise _error(source.path, f'the checkpoint value {name} '
                   f'{source.shapes[tensor_key]} fits no variable of this '
                   'model.', _mismatch_hint(source))
  name_of = {key: name for name, key in values.items()}
  report.unused = sorted(name_of.get(k, k) for k in source.shapes
                         if k not in used)
  return report, pairs


def restore_model_weights(model, path, use_ema=False, strict=False):
  """Fills the model's weights from a checkpoint of any format.

  The model must be built (`model.build_model`), so that its variables and
  their creation order exist. Global step and optimizer state are never
  restored. All values are read before any is assigned, so a failure leaves
  the model unchanged.

  Args:
    model: a `tf2.model.Model` from `build_model`.
    path: see `detect_format`.
    use_ema: take the `ema_model/` copy of a TF1 checkpoint.
    strict: no miss at all. Otherwise a supervised head that the checkpoint
      lacks or has with another number of classes, and a projection head it
      lacks (SimCLRv1), stay as initialised and are reported.

  Returns:
    RestoreReport.

  Raises:
    CheckpointError: bad files, a shape mismatch, an unexpected miss, or a
      checkpoint value that fits no variable.
  """
  source = _Source.open(path)
  report, pairs = _match(model, source, use_ema, strict)
  values = [source.read(key) for _, key in pairs]
  for (variable, _), value in zip(pairs, values):
    variable.assign(value)
  if use_ema:
    report.notes.append(f'Used the {EMA_PREFIX} (moving average) weights.')
  return report


def verify_matches_model(model, path):
  """Raises CheckpointError unless the checkpoint fits the model exactly.

  Reads names and shapes only. Used before resuming from model_dir, so that
  a run with other architecture flags stops instead of overwriting it.
  """
  _match(model, _Source.open(path), use_ema=False, strict=True)


# ---------------------------------------------------- architecture inference

# Rank of each attribute among its siblings in the order the forward pass
# creates them (the shortcut before the residual branch, kernel before bias,
# gamma, beta, then the moving statistics).
_CREATION_RANK = {
    'model': 0, 'resnet_model': 0, '_projection_head': 1,
    'supervised_head': 2, 'initial_conv_relu_max_pool': 0, 'block_groups': 1,
    'layers': 0, 'projection_layers': 0, 'shortcut_layers': 0,
    'conv_relu_dropblock_layers': 1, 'conv2d_bn_layers': 1, 'se_layer': 2,
    'conv2d': 0, 'bn': 0, 'conv2d_fixed_padding': 0, 'batch_norm_relu': 1,
    'conv2d_0': 2, 'batch_norm_relu_1': 3, 'conv2d_1': 4, 'se_reduce': 0,
    'se_expand': 1, 'linear_layers': 0, 'linear_layer': 0, 'dense': 0,
    'bn_relu': 1, 'kernel': 0, 'bias': 1, 'gamma': 0, 'beta': 1,
    'moving_mean': 2, 'moving_variance': 3,
}


def _creation_sort_key(key):
  parts = key[:-len(_VALUE_SUFFIX)].split('/')
  return tuple(int(p) if p.isdigit() else _CREATION_RANK[p] for p in parts)


def tf2_keys_in_creation_order(keys):
  """Sorts object-graph keys of a SimCLR model into variable creation order.

  Derived from the keys alone (no model is built), so it also works for
  architectures too big to build here.

  Raises:
    CheckpointError: a key that is no SimCLR model variable.
  """
  keys = list(keys)
  for key in keys:
    parts = key[:-len(_VALUE_SUFFIX)].split('/') if key.endswith(
        _VALUE_SUFFIX) else None
    if not parts or any(not p.isdigit() and p not in _CREATION_RANK
                        for p in parts):
      raise CheckpointError(f'{key} is no variable of a SimCLR model.')
  return sorted(keys, key=_creation_sort_key)


def tf1_names_for_tf2_keys(keys):
  """{TF2 key: TF1 name} from names alone, in creation order.

  Counts encoder layers per kind in creation order, as TF1 auto-naming did.
  The projection head is named as the nonlinear head (`nl_j`).
  """
  names = {}
  counters = collections.Counter()
  last_layer = {}
  for key in tf2_keys_in_creation_order(keys):
    parts = key[:-len(_VALUE_SUFFIX)].split('/')
    layer, leaf = '/'.join(parts[:-1]), parts[-1]
    if parts[1] == 'resnet_model':
      kind = 'batch_normalization' if parts[-2] == 'bn' else 'conv2d'
      if last_layer.get(kind) != layer:
        counters[kind] += 1
        last_layer[kind] = layer
      index = counters[kind] - 1
      names[key] = (f'{tf1_mapping.ENCODER_SCOPE}/'
                    f'{kind}{f"_{index}" if index else ""}/{leaf}')
    elif parts[1] == '_projection_head':
      kind = 'dense' if parts[4] == 'dense' else 'batch_normalization'
      names[key] = (f'{tf1_mapping.PROJECTION_SCOPE}/nl_{parts[3]}/{kind}/'
                    f'{leaf}')
    else:
      names[key] = f'{tf1_mapping.SUPERVISED_SCOPE}/linear_layer/dense/{leaf}'
  return names


def _layer_index(name):
  match = re.search(r'_(\d+)$', name.split('/')[1])
  return int(match.group(1)) if match else 0


def _encoder_architecture(shapes):
  """Depth, width, SK, SE and stem from the encoder's TF1 conv kernels."""
  convs = sorted(((_layer_index(n), s) for n, s in shapes.items()
                  if n.startswith(tf1_mapping.ENCODER_SCOPE + '/conv2d')
                  and n.endswith('/kernel')), key=lambda x: x[0])
  kernels = [s for _, s in convs]
  if len(kernels) < 8 or any(len(k) != 4 for k in kernels):
    raise ValueError(f'{len(kernels)} encoder convolutions')
  sk_stem = kernels[0][0] == 3 and kernels[1][:2] == (3, 3)
  cifar_stem = kernels[0][0] == 3 and not sk_stem
  stem_convs = 3 if sk_stem else 1
  width64 = kernels[stem_convs - 1][3]
  shortcut = kernels[stem_convs]
  bottleneck = shortcut[3] == 4 * width64
  first_block = kernels[stem_convs + 1:]
  sk_convs = bottleneck and first_block[1][:2] == (3, 3) and (
      first_block[1][3] == 2 * first_block[1][2])
  se_reduce = [s[-1] for n, s in shapes.items() if n.startswith(
      tf1_mapping.ENCODER_SCOPE + '/conv2d') and n.endswith('/bias')]
  per_block = (3 + 2 * sk_convs if bottleneck else 2) + 2 * bool(se_reduce)
  blocks, remainder = divmod(len(kernels) - stem_convs - 4, per_block)
  block_type = 'bottleneck' if bottleneck else 'residual'
  depth = next((d for d, (t, b) in resnet._DEPTH_TO_BLOCKS.items()  # pylint: disable=protected-access
                if t == block_type and sum(b) == blocks), None)
  if remainder or depth is None or width64 % 64:
    raise ValueError(f'{len(kernels)} encoder convolutions')
  return dict(
      resnet_depth=depth, width_multiplier=width64 // 64,
      sk_ratio=0.0625 if (sk_stem or sk_convs) else 0.0,
      cifar_stem=cifar_stem,
      se_ratio=(min(se_reduce) / width64 if se_reduce else 0.0))


def infer_architecture_from_shapes(shapes):
  """Architecture of a SimCLR model from {name: shape} alone.

  Args:
    shapes: model variables as TF1 names or TF2 object-graph keys (without
      optimizer slots, step or EMA copies).

  Returns:
    dict with resnet_depth, width_multiplier, sk_ratio (0.0625 for SK
    models), cifar_stem, se_ratio, proj_head_mode, num_proj_layers and
    proj_out_dim (None without a projection head), num_classes (None
    without a supervised head), has_projection_head, has_supervised_head,
    parameter_count (weights, biases, gammas, betas of all parts present)
    and encoder_parameter_count.

  Raises:
    CheckpointError: the names are not those of a SimCLR model.
  """
  shapes = {n: tuple(s) for n, s in shapes.items()}
  tf2_sk_shortcut = False
  if any(n.endswith(_VALUE_SUFFIX) for n in shapes):
    tf2_sk_shortcut = any(re.search(
        r'block_groups/0/layers/0/(projection|shortcut)_layers/1/conv2d/', n)
                          for n in shapes)
    shapes = {tf1: shapes[k] for k, tf1 in tf1_names_for_tf2_keys(
        shapes).items()}
  try:
    arch = _encoder_architecture(shapes)
  except (ValueError, IndexError) as e:
    raise CheckpointError(f'These variables are no SimCLR ResNet ({e}).') from None
  if tf2_sk_shortcut:
    # A CIFAR-stem ResNet-18/34 shows SK only in its shortcut's pooling.
    arch['sk_ratio'] = 0.0625
  heads = sorted(n for n in shapes if n.startswith(
      tf1_mapping.PROJECTION_SCOPE + '/') and n.endswith('/dense/kernel'))
  sup = shapes.get(f'{tf1_mapping.SUPERVISED_SCOPE}/linear_layer/dense/kernel')
  linear = any(n.startswith(tf1_mapping.PROJECTION_SCOPE + '/l_0/')
               for n in shapes)
  arch.update(
      proj_head_mode='linear' if linear else (
          'nonlinear' if heads else 'none'),
      num_proj_layers=len(heads) or None,
      proj_out_dim=shapes[heads[-1]][-1] if heads else None,
      num_classes=sup[-1] if sup else None,
      has_projection_head=bool(heads), has_supervised_head=sup is not None)

  def count(names):
    return int(sum(np.prod(shapes[n], dtype=np.int64) for n in names
                   if n.rsplit('/', 1)[-1] in _TRAINABLE_LEAVES))

  arch['parameter_count'] = count(shapes)
  arch['encoder_parameter_count'] = count(
      n for n in shapes if n.startswith(tf1_mapping.ENCODER_SCOPE + '/'))
  return arch


def infer_architecture(path):
  """The architecture of the model in a checkpoint of any format.

  Uses names and shapes only (no model is built, no weight is read).

  Returns:
    The dict of `infer_architecture_from_shapes` plus `has_ema`,
    `global_step` (None when absent) and `format`.

  Raises:
    CheckpointError: bad files, or no SimCLR model in them.
  """
  source = _Source.open(path)
  try:
    arch = infer_architecture_from_shapes(source.model_shapes())
  except CheckpointError as e:
    raise _error(source.path, str(e), 'Pass a checkpoint of a SimCLR model.')
  arch.update(has_ema=source.has_ema, global_step=source.global_step(),
              format=source.format)
  return arch


def model_config_for(arch, **overrides):
  """A ModelConfig whose model has exactly the variables of `arch`.

  Args:
    arch: from `infer_architecture`.
    **overrides: other ModelConfig fields (e.g. image_size, global_bn).

  Returns:
    ModelConfig in fine-tuning mode when the checkpoint has a supervised
    head, else in pretraining mode without one; global_bn off (it changes
    no variable) and a small image size (enough to build the variables).
  """
  finetune = arch['has_supervised_head']
  fields = dict(
      num_classes=arch['num_classes'] or 1000,
      resnet_depth=arch['resnet_depth'],
      width_multiplier=arch['width_multiplier'],
      sk_ratio=arch['sk_ratio'], se_ratio=arch['se_ratio'],
      cifar_stem=arch['cifar_stem'],
      image_size=32 if arch['cifar_stem'] else 64,
      proj_head_mode=arch['proj_head_mode'],
      num_proj_layers=arch['num_proj_layers'] or 3,
      proj_out_dim=arch['proj_out_dim'] or 128,
      train_mode='finetune' if finetune else 'pretrain',
      lineareval_while_pretraining=finetune, global_bn=False)
  fields.update(overrides)
  return config_lib.ModelConfig(**fields)
