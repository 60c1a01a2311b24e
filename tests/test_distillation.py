"""Distillation: the loss, and that only the student learns."""

import numpy as np
import pytest
import tensorflow as tf

from tf2.models import config as config_lib
from tf2.models import model as model_lib
from tf2.training import distillation
from tf2.training import objective
from tf2.training import optimization
from tf2.training import step as training


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize('temperature', [1.0, 2.0, 0.5])
def test_loss_is_cross_entropy_of_tempered_softmaxes(temperature):
  teacher = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], np.float32)
  student = np.array([[1.0, 1.0, 0.0], [-2.0, 0.0, 1.0]], np.float32)
  p_teacher = _softmax(teacher / temperature)
  log_p_student = np.log(_softmax(student / temperature))
  expected = -(p_teacher * log_p_student).sum(-1)
  got = distillation.distillation_loss(teacher, student, temperature)
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_loss_is_smallest_when_student_matches_teacher():
  teacher = tf.constant([[3.0, 1.0, 0.0]])
  same = distillation.distillation_loss(teacher, teacher)
  other = distillation.distillation_loss(teacher, tf.constant([[0., 1., 3.]]))
  assert float(same[0]) < float(other[0])


def test_gradient_reaches_the_student_only():
  teacher_logits = tf.Variable([[2.0, 0.0, -1.0]])
  student_logits = tf.Variable([[0.0, 0.0, 0.0]])
  with tf.GradientTape(persistent=True) as tape:
    loss = tf.reduce_mean(distillation.distillation_loss(teacher_logits,
                                                         student_logits))
  assert tape.gradient(loss, teacher_logits) is None
  grad = tape.gradient(loss, student_logits).numpy()
  # d/ds CE(p_t, softmax(s)) = softmax(s) - p_t.
  np.testing.assert_allclose(grad, _softmax(np.zeros((1, 3))) -
                             _softmax(np.array([[2.0, 0.0, -1.0]])),
                             rtol=1e-5)


def _tiny(depth=18):
  return model_lib.build_model(config_lib.ModelConfig(
      num_classes=3, resnet_depth=depth, image_size=8, train_mode='finetune',
      proj_out_dim=8, global_bn=False))


def test_train_step_changes_student_and_leaves_teacher_untouched():
  teacher, student = _tiny(18), _tiny(10)
  teacher.trainable = False
  before = [v.numpy().copy() for v in teacher.variables]
  # Variables that get a gradient in the first step: the supervised head
  # and the stem (the projection head is unused with ft_proj_selector=0,
  # and zero-initialised last batch norms block the residual branches).
  learned = (student.supervised_head.trainable_variables +
             student.resnet_model.initial_conv_relu_max_pool[0]
             .trainable_variables)
  student_before = [v.numpy().copy() for v in learned]
  optimizer = optimization.build_optimizer('momentum', 0.1, 0.9, 0.0)
  config = training.LossConfig(train_mode='distill', optimizer='momentum',
                               weight_decay=0.0, label_loss_weight=0.5)
  metrics = training.build_metrics(config)
  step = training.make_train_step(student, optimizer, config,
                                  tf.distribute.get_strategy(), metrics,
                                  teacher=teacher)
  images = tf.random.uniform([4, 8, 8, 3], seed=1)
  labels = tf.one_hot([0, 1, 2, 0], 3)
  step(images, labels, tf.constant([1.0, 0.0, 0.0, 1.0]))
  for b, v in zip(before, teacher.variables):
    np.testing.assert_array_equal(b, v.numpy())  # Weights and BN statistics.
  changed = [not np.array_equal(b, v.numpy()) for b, v in
             zip(student_before, learned)]
  assert all(changed)
  results = {k: float(m.result()) for k, m in metrics.items()}
  assert results['distill_loss'] > 0
  assert 0.0 <= results['teacher_agreement'] <= 1.0


def test_distill_needs_a_teacher_and_only_distill_takes_one():
  student = _tiny(10)
  optimizer = optimization.build_optimizer('momentum', 0.1, 0.9, 0.0)
  strategy = tf.distribute.get_strategy()
  with pytest.raises(ValueError, match='teacher'):
    training.make_train_step(student, optimizer,
                             training.LossConfig(train_mode='distill'),
                             strategy)
  with pytest.raises(ValueError, match='teacher'):
    training.make_train_step(student, optimizer,
                             training.LossConfig(train_mode='finetune'),
                             strategy, teacher=_tiny(10))


def test_labels_of_unlabeled_examples_are_not_used():
  labels = tf.one_hot([0, 1], 3)
  logits = tf.constant([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
  only_first = objective.supervised_loss(labels, logits,
                                        tf.constant([1.0, 0.0]))
  first = tf.nn.softmax_cross_entropy_with_logits(labels[:1], logits[:1])
  np.testing.assert_allclose(only_first.numpy(), first.numpy()[0], rtol=1e-6)
  none = objective.supervised_loss(labels, logits, tf.constant([0.0, 0.0]))
  assert float(none) == 0.0


def test_teacher_selector_comes_from_its_flags_json(tmp_path):
  (tmp_path / 'saved_model' / '3').mkdir(parents=True)
  (tmp_path / 'flags.json').write_text('{"ft_proj_selector": 1}')
  selector, source = distillation.teacher_ft_proj_selector(
      str(tmp_path / 'saved_model' / '3'))
  assert selector == 1 and source.endswith('flags.json')
  assert distillation.teacher_ft_proj_selector(str(tmp_path), 2)[0] == 2
