"""Fills a model's weights from a checkpoint of any format, strictly.

Every model variable must receive a value of its exact shape and every
checkpoint value must fit a variable, except what is expected and reported:
a supervised head the checkpoint lacks or has for another number of classes
(transfer to a new dataset), and a projection head it lacks (SimCLRv1).
Anything else raises `CheckpointError` naming the first mismatch and the
architecture the checkpoint holds. Only model weights are restored, never
the step or optimizer state. Every value is read before any is assigned, so
a failure (a damaged data file included) leaves the model unchanged.

Model variables are paired with checkpoint values by object-graph key
(TF2 checkpoints, SavedModels) or TF1 name (tf1_mapping.py); which model
part a variable belongs to comes from variable_roles.py.
"""

import collections
import dataclasses

from tf2.checkpoints import architecture
from tf2.checkpoints import files as checkpoint_files
from tf2.checkpoints import object_graph
from tf2.checkpoints import tf1_mapping
from tf2.models import variable_roles

# The heads a restore may leave as initialised, and how reports name them.
_HEADS = {variable_roles.SUPERVISED_HEAD: 'supervised',
          variable_roles.PROJECTION_HEAD: 'projection'}


@dataclasses.dataclass
class RestoreReport:
  """What a restore did.

  Attributes:
    path: the checkpoint as given.
    format: one of checkpoint_files.FORMATS.
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
    kinds = collections.Counter(self._kind_of_unused(n) for n in self.unused)
    unused = ', '.join(f'{count} {kind}' for kind, count in sorted(
        kinds.items())) or 'nothing'
    notes = ''.join(f' {note}' for note in self.notes)
    return (f'restored {len(self.filled)} variables from {self.format} '
            f'{self.path}; left {len(self.missing)} as initialised; '
            f'ignored {unused}.{notes}')

  def _kind_of_unused(self, name):
    if name.startswith(tf1_mapping.EMA_PREFIX):
      return 'EMA copies'
    if 'global_step' in name or name == 'save_counter' + (
        object_graph.VALUE_SUFFIX):
      return 'step counters'
    if '.OPTIMIZER_SLOT' in name or name.startswith('optimizer/') or (
        tf1_mapping.BOOKKEEPING.search(name)):
      return 'optimizer values'
    if name in self.missing:
      return 'values of the replaced supervised head'
    return 'raw weights (the EMA copy was used)'


@dataclasses.dataclass(frozen=True)
class _Target:
  """A model variable and its names."""
  name: str  # in the checkpoint's naming
  key: str  # its TF2 object-graph key
  variable: object
  part: str  # a variable_roles part


def _targets(model, naming):
  """[_Target] of every model variable, in creation order."""
  roles = variable_roles.classify(model)
  if naming == 'tf1':
    named = tf1_mapping.tf1_targets(model)
  else:
    named = [(key, key, variable) for key, variable in
             object_graph.keyed_in_creation_order(model)]
  return [_Target(name, key, variable, roles[variable.ref()].part)
          for name, key, variable in named]


def _ema_values(checkpoint, values, targets):
  """`values` with each target's raw value replaced by its `ema_model/` copy.

  Raises:
    CheckpointError: the checkpoint has no EMA copy, or lacks one of a
      weight that must have it.
  """
  path, ema = checkpoint.path, tf1_mapping.EMA_PREFIX
  if checkpoint.naming == 'object_graph':
    raise checkpoint_files.checkpoint_error(
        path, f'--use_ema needs a TF1 checkpoint with an {ema} copy, but this '
        f'is a {checkpoint.format} with one set of weights.',
        'Leave --use_ema=False.')
  if not checkpoint.has_ema:
    raise checkpoint_files.checkpoint_error(
        path, f'--use_ema asks for the {ema} weights but this checkpoint has '
        'none.', 'Leave --use_ema=False.')
  averaged = dict(values)
  for target in targets:
    if ema + target.name in checkpoint.shapes:
      averaged[target.name] = ema + target.name
    elif target.name in values and target.part != (
        variable_roles.SUPERVISED_HEAD):
      # The published checkpoints keep no average of the supervised head
      # (trained on a stopped gradient); it alone comes from the raw copy.
      raise checkpoint_files.checkpoint_error(
          path, f'--use_ema: the {ema} copy lacks {target.name}.',
          'Leave --use_ema=False to use the raw weights.')
  return averaged


def _mismatch_hint(checkpoint):
  try:
    arch = architecture.infer_architecture_from_shapes(
        checkpoint.model_shapes())
  except checkpoint_files.CheckpointError:
    return 'The architecture flags differ from the checkpoint\'s.'
  return (f'The checkpoint holds a {architecture.describe_architecture(arch)};'
          ' pass the matching architecture flags (or leave them at their '
          'defaults so that run.py infers them; '
          'checkpoints_tools/inspect_checkpoint.py prints them).')


def _excused_heads(targets, found, report):
  """Parts the model may keep as initialised; notes why in the report."""
  excused = set()
  for part, label in _HEADS.items():
    names = [(t.name, tuple(t.variable.shape)) for t in targets
             if t.part == part]
    absent = all(n not in found for n, _ in names)
    unfit = all(found.get(n) != shape for n, shape in names)
    if names and (absent or (part == variable_roles.SUPERVISED_HEAD and
                             unfit)):
      excused.add(part)
      report.notes.append(
          f'The model\'s {label} head was left as initialised: the '
          'checkpoint ' + ('has none.' if absent else 'has one of another '
                           'shape (another number of classes).'))
  return excused


def _check_fit(checkpoint, target, found, missing_count):
  """Raises CheckpointError unless the checkpoint has a value for target."""
  name, shape = target.name, tuple(target.variable.shape)
  label = name if name == target.key else f'{name} (model key {target.key})'
  if name not in found:
    raise checkpoint_files.checkpoint_error(
        checkpoint.path, f'{missing_count} model variables are not in the '
        f'checkpoint, the first is {label} of shape {shape}.',
        _mismatch_hint(checkpoint))
  if found[name] != shape:
    raise checkpoint_files.checkpoint_error(
        checkpoint.path, f'the first mismatching variable is {label}: the '
        f'model expects shape {shape} but the checkpoint has {found[name]}.',
        _mismatch_hint(checkpoint))


def _match(model, checkpoint, use_ema, strict):
  """Pairs model variables with checkpoint values; raises on any misfit.

  Returns:
    (RestoreReport, [(variable, tensor key)]).
  """
  values = checkpoint.model_values()
  targets = _targets(model, checkpoint.naming)
  if use_ema:
    values = _ema_values(checkpoint, values, targets)
  found = {t.name: checkpoint.shapes[values[t.name]] for t in targets
           if t.name in values}
  report = RestoreReport(checkpoint.path, checkpoint.format)
  excused = set() if strict else _excused_heads(targets, found, report)
  report.missing = [t.name for t in targets if t.part in excused]
  expected = [t for t in targets if t.part not in excused]
  missing_count = sum(t.name not in found for t in expected)
  for target in expected:
    _check_fit(checkpoint, target, found, missing_count)
  report.filled = [t.name for t in expected]
  used = {values[n] for n in report.filled}
  for name, tensor_key in values.items():
    if tensor_key not in used and name not in report.missing:
      raise checkpoint_files.checkpoint_error(
          checkpoint.path, f'the checkpoint value {name} '
          f'{checkpoint.shapes[tensor_key]} fits no variable of this model.',
          _mismatch_hint(checkpoint))
  name_of = {key: name for name, key in values.items()}
  report.unused = sorted(name_of.get(k, k) for k in checkpoint.shapes
                         if k not in used)
  return report, [(t.variable, values[t.name]) for t in expected]


def restore_model_weights(model, path, use_ema=False, strict=False):
  """Fills the model's weights from a checkpoint of any format.

  Args:
    model: a `tf2.models.model.Model` from `model.build_model`, so that its
      variables and their creation order exist.
    path: see `checkpoint_files.detect_format`; any filesystem.
    use_ema: take the `ema_model/` copy of a TF1 checkpoint.
    strict: no miss at all. Otherwise a supervised head that the checkpoint
      lacks or has with another number of classes, and a projection head it
      lacks (SimCLRv1), stay as initialised and are reported.

  Returns:
    RestoreReport.

  Raises:
    CheckpointError: bad or damaged files, a shape mismatch, an unexpected
      miss, or a checkpoint value that fits no variable. The model is then
      unchanged.
  """
  checkpoint = checkpoint_files.open_checkpoint(path)
  report, pairs = _match(model, checkpoint, use_ema, strict)
  values = [checkpoint.read(key) for _, key in pairs]
  for (variable, _), value in zip(pairs, values):
    variable.assign(value)
  if use_ema:
    report.notes.append(
        f'Used the {tf1_mapping.EMA_PREFIX} (moving average) weights.')
  return report


def verify_matches_model(model, path):
  """Raises CheckpointError unless the checkpoint fits the model exactly.

  Reads names and shapes only. Used before resuming from model_dir, so that
  a run with other architecture flags stops instead of overwriting it.
  """
  _match(model, checkpoint_files.open_checkpoint(path), use_ema=False,
         strict=True)
