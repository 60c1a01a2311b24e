"""What each variable of the model is, decided by the layer that holds it.

The weight-decay policy (optimization.py) and the checkpoint restore need
to know, for every variable, the model part it belongs to (encoder,
projection head, supervised head) and what it is (a kernel, a bias, a
batch-norm parameter or statistic). Both are read from the layer objects --
which attribute of which Keras layer holds the variable, inside which of the
model's three parts -- never from the names tf-keras generates, which change
with name scopes, layer counters and strategies.

Every variable is matched by exactly one rule of RULES; `classify` checks it.
"""

import dataclasses

import tensorflow as tf
import tf_keras

ENCODER = 'encoder'
PROJECTION_HEAD = 'projection_head'
SUPERVISED_HEAD = 'supervised_head'
# The Model attribute that holds each part (see model.py).
_PART_ATTRIBUTES = ((ENCODER, 'resnet_model'),
                    (PROJECTION_HEAD, '_projection_head'),
                    (SUPERVISED_HEAD, 'supervised_head'))
# The attributes under which Keras layers hold their variables.
_VARIABLE_ATTRIBUTES = ('kernel', 'bias', 'gamma', 'beta', 'moving_mean',
                        'moving_variance')
_BATCH_NORMS = (tf_keras.layers.BatchNormalization,
                tf_keras.layers.experimental.SyncBatchNormalization)

BATCH_NORM_PARAMETER = 'batch_norm_parameter'
BATCH_NORM_STATISTIC = 'batch_norm_statistic'
SUPERVISED_KERNEL = 'supervised_kernel'
SUPERVISED_BIAS = 'supervised_bias'
BIAS = 'bias'
KERNEL = 'kernel'


@dataclasses.dataclass(frozen=True)
class Slot:
  """Where a variable sits.

  Attributes:
    part: ENCODER, PROJECTION_HEAD or SUPERVISED_HEAD.
    layer: the Keras layer that holds the variable.
    attribute: the layer attribute that holds it (`kernel`, `gamma`, ...).
  """
  part: str
  layer: object
  attribute: str

  @property
  def in_batch_norm(self):
    return isinstance(self.layer, _BATCH_NORMS)


def _weight(attribute, supervised):
  """A rule for a kernel or bias outside batch norms, in or out of the head."""
  return lambda slot: (not slot.in_batch_norm and
                       slot.attribute == attribute and
                       (slot.part == SUPERVISED_HEAD) == supervised)


# Disjoint rules; each variable must match exactly one.
RULES = {
    BATCH_NORM_PARAMETER: lambda slot: slot.in_batch_norm and (
        slot.attribute in ('gamma', 'beta')),
    BATCH_NORM_STATISTIC: lambda slot: slot.in_batch_norm and (
        slot.attribute in ('moving_mean', 'moving_variance')),
    SUPERVISED_KERNEL: _weight('kernel', supervised=True),
    SUPERVISED_BIAS: _weight('bias', supervised=True),
    BIAS: _weight('bias', supervised=False),
    KERNEL: _weight('kernel', supervised=False),
}


@dataclasses.dataclass(frozen=True)
class Role:
  """A variable's model part (as Slot.part) and kind (a key of RULES)."""
  part: str
  kind: str


def _parts(model):
  """[(part, layer)] of the model parts it has."""
  return [(part, getattr(model, attribute)) for part, attribute in
          _PART_ATTRIBUTES if getattr(model, attribute, None) is not None]


def slots(model):
  """[(variable, Slot)] of every variable a layer of the model holds.

  Args:
    model: a `tf2.models.model.Model`, or any object with the same part attributes
      (`resnet_model`, `_projection_head`, `supervised_head`) holding Keras
      layers.
  """
  found = []
  for part, owner in _parts(model):
    for layer in [owner, *owner.submodules]:
      for attribute in _VARIABLE_ATTRIBUTES:
        variable = getattr(layer, attribute, None)
        if isinstance(variable, tf.Variable):
          found.append((variable, Slot(part, layer, attribute)))
  return found


def matching_rules(slot):
  """The names of the RULES that match a Slot."""
  return [kind for kind, rule in RULES.items() if rule(slot)]


def classify(model):
  """{variable.ref(): Role} for every variable of the model.

  Args:
    model: see `slots`.

  Raises:
    ValueError: a variable that no layer attribute holds, that several
      hold, or that no rule or several rules match: the rules no longer
      describe the model and must be extended.
  """
  roles = {}
  for variable, slot in slots(model):
    where = f'{variable.name} ({type(slot.layer).__name__}.{slot.attribute})'
    kinds = matching_rules(slot)
    if variable.ref() in roles:
      raise ValueError(f'{where} is held by two layers.')
    if len(kinds) != 1:
      raise ValueError(f'{where} matches {len(kinds)} rules {kinds}: '
                       'variable_roles.RULES must give it exactly one.')
    roles[variable.ref()] = Role(slot.part, kinds[0])
  for _, owner in _parts(model):
    for variable in owner.variables:
      if variable.ref() not in roles:
        raise ValueError(
            f'{variable.name} is held by no layer attribute that '
            'variable_roles knows: extend _VARIABLE_ATTRIBUTES and RULES.')
  return roles
