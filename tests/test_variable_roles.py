"""Each variable gets one role from the layer that holds it, and the
weight-decay policy built on roles decides as the reference's names did."""

import pytest
import tf_keras

from tf2.models import config as config_lib
from tf2.models import model as model_lib
from tf2.models import variable_roles
from tf2.training import optimization

_BASE = dict(num_classes=5, resnet_depth=18, image_size=8, cifar_stem=True,
             global_bn=False)
_MODELS = {
    'r18_cifar_stem': dict(),
    'r50_sk_se': dict(resnet_depth=50, sk_ratio=0.0625, se_ratio=0.25,
                      cifar_stem=False, image_size=32),
    'pretrain_with_linear_eval': dict(train_mode='pretrain',
                                      lineareval_while_pretraining=True),
    'finetune_global_bn': dict(train_mode='finetune', global_bn=True,
                               fine_tune_after_block=2),
    'linear_head': dict(proj_head_mode='linear', se_ratio=0.25),
    'no_head': dict(proj_head_mode='none', lineareval_while_pretraining=False),
}


@pytest.fixture(scope='module', params=sorted(_MODELS))
def model(request):
  fields = dict(_BASE, **_MODELS[request.param])
  return model_lib.build_model(config_lib.ModelConfig(**fields))


def _old_excluded_from_lars(name):
  # The reference: exclude_from_weight_decay=['batch_normalization', 'bias',
  # 'head_supervised'] searched in names; layer adaptation the same.
  return any(p in name for p in ('batch_normalization', 'bias',
                                 'head_supervised'))


def _old_decayed_in_loss(name, optimizer_name):
  if optimizer_name == 'lars':
    return 'head_supervised' in name and 'bias' not in name
  return 'batch_normalization' not in name


def test_every_variable_is_matched_by_exactly_one_rule(model):
  rules_of = {}
  for variable, slot in variable_roles.slots(model):
    assert variable.ref() not in rules_of, variable.name
    rules_of[variable.ref()] = variable_roles.matching_rules(slot)
  assert set(rules_of) == {v.ref() for v in model.variables}
  for variable in model.variables:
    assert len(rules_of[variable.ref()]) == 1, (variable.name,
                                               rules_of[variable.ref()])
  roles = variable_roles.classify(model)
  assert {r.kind for r in roles.values()} <= set(variable_roles.RULES)


def test_parts_are_the_model_attributes_holding_the_variables(model):
  roles = variable_roles.classify(model)
  owners = {
      variable_roles.ENCODER: model.resnet_model,
      variable_roles.PROJECTION_HEAD: model._projection_head,  # pylint: disable=protected-access
      variable_roles.SUPERVISED_HEAD: model.supervised_head}
  for part, owner in owners.items():
    held = owner.variables if owner is not None else []
    assert {v.ref() for v in held} == {
        ref for ref, role in roles.items() if role.part == part}, part


def test_decisions_are_the_reference_name_based_ones(model):
  roles = variable_roles.classify(model)
  lars = optimization.build_optimizer('lars', 0.1, weight_decay=1e-6,
                                      model=model)
  checked = 0
  for variable in model.variables:
    kind, name = roles[variable.ref()].kind, variable.name
    assert optimization.excluded_from_lars(kind) == (
        _old_excluded_from_lars(name)), name
    assert lars.exclude_from_weight_decay(variable) == (
        _old_excluded_from_lars(name)), name
    assert lars.exclude_from_layer_adaptation(variable) == (
        _old_excluded_from_lars(name)), name
    for optimizer_name in optimization.OPTIMIZERS:
      assert optimization.decayed_in_loss(kind, optimizer_name) == (
          _old_decayed_in_loss(name, optimizer_name)), (name, optimizer_name)
    checked += 1
  assert checked == len(model.variables) > 10


class _EmbeddingEncoder(tf_keras.layers.Layer):

  def __init__(self):
    super().__init__()
    self.resnet_model = tf_keras.layers.Embedding(4, 2)
    self.resnet_model.build([None])


def test_a_variable_no_rule_knows_is_refused():
  with pytest.raises(ValueError, match='no layer attribute'):
    variable_roles.classify(_EmbeddingEncoder())
