"""Training and evaluation metrics, named as the reference's summaries."""

import tensorflow as tf
import tf_keras


def contrastive_metrics():
  return {name: tf_keras.metrics.Mean(f'train/{name}')
          for name in ('contrast_loss', 'contrast_acc', 'contrast_entropy')}


def supervised_metrics():
  return {name: tf_keras.metrics.Mean(f'train/{name}')
          for name in ('supervised_loss', 'supervised_acc')}


def distillation_metrics():
  return {name: tf_keras.metrics.Mean(f'train/{name}')
          for name in ('distill_loss', 'teacher_agreement')}


def loss_metrics():
  return {name: tf_keras.metrics.Mean(f'train/{name}')
          for name in ('weight_decay', 'total_loss')}


def eval_metrics():
  return {
      'regularization_loss': tf_keras.metrics.Mean('eval/regularization_loss'),
      'label_top_1_accuracy': tf_keras.metrics.Accuracy(
          'eval/label_top_1_accuracy'),
      'label_top_5_accuracy': tf_keras.metrics.TopKCategoricalAccuracy(
          5, 'eval/label_top_5_accuracy'),
  }


def update_contrastive(metrics, loss, logits_con, labels_con):
  """Loss, accuracy of picking the positive, and entropy of the softmax."""
  metrics['contrast_loss'].update_state(loss)
  correct = tf.equal(tf.argmax(labels_con, 1), tf.argmax(logits_con, 1))
  metrics['contrast_acc'].update_state(tf.reduce_mean(tf.cast(correct,
                                                              tf.float32)))
  prob = tf.nn.softmax(logits_con)
  entropy = -tf.reduce_mean(tf.reduce_sum(prob * tf.math.log(prob + 1e-8),
                                          -1))
  metrics['contrast_entropy'].update_state(entropy)


def update_supervised(metrics, loss, labels, logits, labeled=None):
  """Loss and accuracy; with `labeled` (B,), over labeled examples only."""
  metrics['supervised_loss'].update_state(loss)
  correct = tf.cast(tf.equal(tf.argmax(labels, 1), tf.argmax(logits, 1)),
                    tf.float32)
  metrics['supervised_acc'].update_state(
      correct, sample_weight=None if labeled is None else labeled)


def update_distillation(metrics, loss, teacher_logits, student_logits):
  """Distillation loss, and how often the student agrees with the teacher."""
  metrics['distill_loss'].update_state(loss)
  agree = tf.equal(tf.argmax(teacher_logits, 1), tf.argmax(student_logits, 1))
  metrics['teacher_agreement'].update_state(tf.cast(agree, tf.float32))


def update_eval(metrics, labels, logits, regularization_loss):
  metrics['label_top_1_accuracy'].update_state(tf.argmax(labels, 1),
                                               tf.argmax(logits, 1))
  metrics['label_top_5_accuracy'].update_state(labels, logits)
  metrics['regularization_loss'].update_state(regularization_loss)


def results(metrics):
  """{summary name: python float} of a dict of metrics."""
  return {m.name: float(m.result().numpy()) for m in metrics.values()}


def write_summaries(metrics, step):
  """Writes every metric as a scalar summary (inside a writer's default)."""
  for name, value in results(metrics).items():
    tf.summary.scalar(name, value, step=step)


def reset(metrics):
  for metric in metrics.values():
    metric.reset_state()
