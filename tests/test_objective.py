"""NT-Xent and supervised losses against the reference."""


import numpy as np
import pytest
import tensorflow as tf

from tf2.training import objective


@pytest.mark.parametrize('i', [0, 1, 2])
def test_contrastive_loss_matches_reference(reference_ops, i):
  ref = {k.split('/', 1)[1]: v for k, v in reference_ops.items()
         if k.startswith(f'contrastive{i}/')}
  loss, logits_ab, labels = objective.contrastive_loss(
      tf.constant(ref['hidden']), hidden_norm=bool(ref['hidden_norm']),
      temperature=float(ref['temperature']))
  np.testing.assert_allclose(loss.numpy(), ref['loss'], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(logits_ab.numpy(), ref['logits_ab'], rtol=1e-6,
                             atol=1e-6)
  np.testing.assert_array_equal(labels.numpy(), ref['labels'])


def test_supervised_loss_is_mean_cross_entropy():
  labels = tf.constant([[1., 0.], [0., 1.]])
  logits = tf.constant([[2., 0.], [0., 0.]])
  expected = np.mean([np.log(1 + np.exp(-2.)), np.log(2.)])
  np.testing.assert_allclose(objective.supervised_loss(labels, logits),
                             expected, rtol=1e-6)


def test_two_replica_contrastive_loss_and_gradient_equal_one_replica(
    two_cpu_strategy):
  rng = np.random.RandomState(1)
  # Global batch of 4 images: view-1 rows then view-2 rows.
  view1 = rng.standard_normal([4, 5]).astype(np.float32)
  view2 = rng.standard_normal([4, 5]).astype(np.float32)
  kernel = tf.Variable(rng.standard_normal([5, 3]).astype(np.float32))

  with tf.GradientTape() as tape:
    hidden = tf.matmul(tf.concat([view1, view2], 0), kernel)
    single_loss, _, _ = objective.contrastive_loss(hidden, temperature=0.5)
  single_grad = tape.gradient(single_loss, kernel)

  with two_cpu_strategy.scope():
    mirrored_kernel = tf.Variable(kernel.numpy())

  def step(ctx_view1, ctx_view2):
    with tf.GradientTape() as tape:
      hidden = tf.matmul(tf.concat([ctx_view1, ctx_view2], 0),
                         mirrored_kernel)
      loss, _, _ = objective.contrastive_loss(
          hidden, temperature=0.5, strategy=two_cpu_strategy)
      scaled = loss / two_cpu_strategy.num_replicas_in_sync
    return loss, tape.gradient(scaled, mirrored_kernel)

  def shard(ctx):
    i = ctx.replica_id_in_sync_group
    return view1[2 * i:2 * i + 2], view2[2 * i:2 * i + 2]

  @tf.function
  def run():
    args = two_cpu_strategy.experimental_distribute_values_from_function(shard)
    loss, grad = two_cpu_strategy.run(step, args=args)
    return (two_cpu_strategy.reduce('MEAN', loss, None),
            two_cpu_strategy.reduce('SUM', grad, None))

  loss, grad = run()
  np.testing.assert_allclose(loss.numpy(), single_loss.numpy(), atol=1e-5)
  np.testing.assert_allclose(grad.numpy(), single_grad.numpy(), atol=1e-5)
