"""Losses: NT-Xent contrastive loss with negatives from all replicas, and
supervised cross-entropy."""

import collections

import tensorflow as tf

LARGE_NUM = 1e9  # Masks a sample's similarity with itself out of the softmax.


def cross_replica_concat(tensor, strategy):
  """Concatenates `tensor` from all replicas along axis 0, in replica order.

  Each replica writes its slice into a zero tensor at its own index and the
  results are summed with an all-reduce. The gradient of a SUM all-reduce is
  a SUM all-reduce, so every replica receives the gradient of its own slice
  from the losses of all replicas, which a plain all_gather would not give.
  """
  num_replicas = strategy.num_replicas_in_sync
  if num_replicas == 1:
    return tensor
  context = tf.distribute.get_replica_context()
  replica_id = context.replica_id_in_sync_group
  placed = tf.scatter_nd(
      indices=[[replica_id]], updates=[tensor],
      shape=tf.concat([[num_replicas], tf.shape(tensor)], 0))
  gathered = context.all_reduce(tf.distribute.ReduceOp.SUM, placed)
  return tf.reshape(gathered, tf.concat([[-1], tf.shape(tensor)[1:]], 0))


class ContrastiveLogits(collections.namedtuple(
    'ContrastiveLogits',
    ['hidden1', 'hidden2', 'logits_a', 'logits_b', 'logits_ab', 'labels'])):
  """The similarities NT-Xent takes its two softmaxes over.

  Attributes:
    hidden1, hidden2: (N, d) this replica's (normalised) view-1 and view-2
      projections, the anchors.
    logits_a: (N, 2 N_global) view-1 anchors against [all view-2 | all
      view-1] samples, the anchor itself masked out.
    logits_b: (N, 2 N_global) view-2 anchors against [all view-1 | all
      view-2] samples.
    logits_ab: (N, N_global) the first half of logits_a (for metrics).
    labels: (N, 2 N_global) one-hot positives, for both logits_a and logits_b.
  """


def contrastive_logits(hidden, hidden_norm=True, temperature=1.0,
                       strategy=None):
  """The logits and labels of the NT-Xent loss (see contrastive_loss).

  Returns:
    ContrastiveLogits.
  """
  if hidden_norm:
    hidden = tf.math.l2_normalize(hidden, -1)
  hidden1, hidden2 = tf.split(hidden, 2, 0)
  batch_size = tf.shape(hidden1)[0]
  replicas = 1 if strategy is None else strategy.num_replicas_in_sync
  if replicas > 1:
    hidden1_large = cross_replica_concat(hidden1, strategy)
    hidden2_large = cross_replica_concat(hidden2, strategy)
    replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
    offset = tf.cast(replica_id, tf.int32) * batch_size
  else:
    hidden1_large, hidden2_large = hidden1, hidden2
    offset = 0
  global_batch = tf.shape(hidden1_large)[0]
  index = tf.range(batch_size) + offset
  labels = tf.one_hot(index, global_batch * 2, dtype=hidden.dtype)
  masks = tf.one_hot(index, global_batch, dtype=hidden.dtype)

  logits_aa = tf.matmul(hidden1, hidden1_large, transpose_b=True) / temperature
  logits_aa -= masks * LARGE_NUM
  logits_bb = tf.matmul(hidden2, hidden2_large, transpose_b=True) / temperature
  logits_bb -= masks * LARGE_NUM
  logits_ab = tf.matmul(hidden1, hidden2_large, transpose_b=True) / temperature
  logits_ba = tf.matmul(hidden2, hidden1_large, transpose_b=True) / temperature
  return ContrastiveLogits(
      hidden1, hidden2, tf.concat([logits_ab, logits_aa], 1),
      tf.concat([logits_ba, logits_bb], 1), logits_ab, labels)


def nt_xent(labels, logits_a, logits_b):
  """Mean over anchors of the two views' softmax cross-entropies."""
  loss_a = tf.nn.softmax_cross_entropy_with_logits(labels, logits_a)
  loss_b = tf.nn.softmax_cross_entropy_with_logits(labels, logits_b)
  return tf.reduce_mean(loss_a + loss_b)


def contrastive_loss(hidden, hidden_norm=True, temperature=1.0,
                     strategy=None):
  """NT-Xent loss of two views stacked on the batch axis.

  Args:
    hidden: (2N, d) projections: the first N rows are view 1, the last N
      view 2 of the same N images.
    hidden_norm: l2-normalise the projections (cosine similarity).
    temperature: softmax temperature.
    strategy: when it has several replicas and this runs in a replica
      context, negatives come from the global batch of all replicas.

  Returns:
    (loss, logits_ab, labels): the scalar loss; (N, N_global) similarities of
    view 1 with all view-2 samples; (N, 2 N_global) one-hot positives.
  """
  parts = contrastive_logits(hidden, hidden_norm, temperature, strategy)
  loss = nt_xent(parts.labels, parts.logits_a, parts.logits_b)
  return loss, parts.logits_ab, parts.labels


def supervised_loss(labels, logits, labeled=None):
  """Mean softmax cross-entropy over the labeled examples of the batch.

  Args:
    labels: (B, C) one-hot.
    logits: (B, C).
    labeled: optional (B,) 1 for examples whose label may be used, 0 for
      unlabeled ones (the rest of a label subset, an `unlabeled` folder);
      None means all are labeled (the plain mean). A batch without labeled
      examples gives 0.

  Returns:
    Scalar loss.
  """
  per_example = tf.nn.softmax_cross_entropy_with_logits(labels, logits)
  if labeled is None:
    return tf.reduce_mean(per_example)
  labeled = tf.cast(labeled, per_example.dtype)
  return tf.math.divide_no_nan(tf.reduce_sum(per_example * labeled),
                               tf.reduce_sum(labeled))
