"""A replica's batch in K micro-batches, with the loss of the whole batch.

Why not plain gradient accumulation: NT-Xent couples every example of the
global batch (each anchor's softmax runs over all others), so a micro-batch
that only saw its own negatives would optimise another loss. The chunked
method of Gao et al. ("Scaling Deep Contrastive Learning Batch Size under
Memory Limited Setup", 2021, "GradCache") keeps the loss exact:

  1. embed every micro-batch without a tape (no activations are kept);
  2. compute the contrastive loss over all embeddings of all replicas (and
     the memory's keys) and its gradient with respect to the embeddings;
  3. run each micro-batch again under a tape and backpropagate its share:
     `tape.gradient(embeddings, weights, output_gradients=that gradient)`.

The losses of single examples (the supervised head, distillation) need no
first pass: each micro-batch's sum over its examples, divided by the count
of the whole batch, accumulates exactly. Peak activation memory is that of
one micro-batch; the price is one more forward pass (pretraining only).

What K changes and what it does not:
  * The augmentation happens before the split: the host's crops and colour,
    augment_on_device, and the model's blur, which is drawn once for the
    whole batch (`Model.views`, one seed per step and replica) and then
    sliced, so that every image keeps its draws whatever K is.
  * Batch norm in training mode normalises one micro-batch at a time, as K
    times as many replicas without --global_bn would. Its moving averages
    are updated once per step, to the mean of the K micro-batches' updates
    (what those replicas' averages read as); the first pass leaves them be.
"""

import tensorflow as tf

from tf2.models import recompute
from tf2.runtime import precision
from tf2.training import distillation
from tf2.training import memory_buffer
from tf2.training import metrics as metrics_lib
from tf2.training import objective
from tf2.training import optimization


def _float32(tensor):
  """Losses are computed in float32 even under a mixed-precision policy."""
  if tensor.dtype in (tf.float16, tf.bfloat16):
    return tf.cast(tensor, tf.float32)
  return tensor


def split_inputs(model, images, num_microbatches, pretrain, seed=None):
  """The model inputs of the K micro-batches, augmented as the whole batch.

  Args:
    model: a tf2.models.model.Model.
    images: (B, H, W, 6) two views in pretraining, (B, H, W, 3) otherwise.
    num_microbatches: K, dividing B.
    pretrain: split and blur the two views first.
    seed: the blur's seed (see `Model.endpoints`).

  Returns:
    K tensors: in pretraining (2B/K, H, W, 3), micro-batch j's view 1 then
    its view 2; otherwise (B/K, H, W, 3).
  """
  if not pretrain:
    return tf.split(images, num_microbatches)
  view1, view2 = tf.split(model.views(images, training=True, seed=seed), 2)
  return [tf.concat(pair, 0) for pair in zip(
      tf.split(view1, num_microbatches), tf.split(view2, num_microbatches))]


def _interleaved(parts):
  """K (2m, ...) micro-batch tensors -> (2B, ...) all views 1, all views 2."""
  halves = [tf.split(part, 2) for part in parts]
  return tf.concat([h[0] for h in halves] + [h[1] for h in halves], 0)


def _per_view(tensor, num_microbatches):
  """(2B, ...) in batch order -> K (2m, ...) in micro-batch order."""
  first, second = tf.split(tensor, 2)
  return [tf.concat(pair, 0) for pair in zip(
      tf.split(first, num_microbatches), tf.split(second, num_microbatches))]


def _moving_statistics(model):
  """The batch norms' moving averages, which a training-mode pass updates."""
  return [v for v in model.non_trainable_variables
          if 'moving_mean' in v.name or 'moving_variance' in v.name]


def _add(total, grads):
  if total is None:
    return list(grads)
  return [a if b is None else b if a is None else a + b
          for a, b in zip(total, grads)]


def make_loss_and_gradients(model, optimizer, loss_config, strategy,
                            num_microbatches, metrics=None, teacher=None,
                            memory=None):
  """Returns `fn(images, labels, labeled, seed) -> (loss, gradients)`.

  The drop-in of step.make_train_step's unchunked pass, for one replica:
  the same loss (compute_loss's, of the whole per-replica batch) and the
  gradients of loss / replicas, unscaled; the metrics are updated once with
  the whole batch's values.

  Args:
    model, optimizer, loss_config, strategy, metrics, teacher, memory: as
      step.make_train_step.
    num_microbatches: K >= 1, dividing the per-replica batch.
  """
  if num_microbatches < 1:
    raise ValueError(f'num_microbatches={num_microbatches}: use 1 or more.')
  pretrain = loss_config.train_mode == 'pretrain'
  k = num_microbatches

  def contrastive(hidden):
    """(loss, logits_ab, labels, d loss / d hidden) of all embeddings."""
    with tf.GradientTape() as tape:
      tape.watch(hidden)
      if memory is None:
        con_loss, logits_con, labels_con = objective.contrastive_loss(
            hidden, hidden_norm=loss_config.hidden_norm,
            temperature=loss_config.temperature, strategy=strategy)
      else:
        con_loss, logits_con, labels_con = (
            memory_buffer.memory_contrastive_loss(
                memory, hidden, hidden_norm=loss_config.hidden_norm,
                temperature=loss_config.temperature, strategy=strategy))
    return con_loss, logits_con, labels_con, tape.gradient(con_loss, hidden)

  def example_losses(labels, logits, labeled, soft):
    """Summed per-example losses of one micro-batch (divided later)."""
    sup = tf.nn.softmax_cross_entropy_with_logits(labels, logits)
    if labeled is not None:
      sup *= tf.cast(labeled, sup.dtype)
    if soft is None:
      return tf.reduce_sum(sup), None
    dist = distillation.distillation_loss(
        soft, logits, loss_config.distillation_temperature)
    return tf.reduce_sum(sup), tf.reduce_sum(dist)

  def fn(images, labels, labeled=None, seed=None):
    inputs = split_inputs(model, images, k, pretrain, seed)
    labels_full = tf.concat([labels, labels], 0) if pretrain else labels
    labeled_full = None
    if labeled is not None:
      labeled_full = tf.concat([labeled, labeled], 0) if pretrain else labeled
    if pretrain:
      label_parts = _per_view(labels_full, k)
      labeled_parts = (None if labeled is None else
                       _per_view(labeled_full, k))
    else:
      label_parts = tf.split(labels, k)
      labeled_parts = None if labeled is None else tf.split(labeled, k)
    count = (tf.cast(tf.shape(labels_full)[0], tf.float32)
             if labeled is None else
             tf.reduce_sum(tf.cast(labeled_full, tf.float32)))
    examples = tf.cast(tf.shape(labels)[0], tf.float32)
    # float32 under every mixed policy; float64 when the model computes so.
    loss_dtype = _float32(tf.zeros([], precision.compute_dtype())).dtype
    statistics = _moving_statistics(model)
    start = [tf.identity(v.read_value()) for v in statistics]

    con_loss, hidden_grads = None, None
    if pretrain:
      # Pass 1: the embeddings of every micro-batch, no activations kept.
      embedded = []
      for x in inputs:
        # One micro-batch after the other, not all at once (recompute.after).
        if embedded:
          x = recompute.after(x, embedded[-1])
        embedded.append(_float32(model(x, training=True)[0]))
      hidden = _interleaved(embedded)
      for v, value in zip(statistics, start):
        v.assign(value)
      con_loss, logits_con, labels_con, hidden_grad = contrastive(hidden)
      hidden_grads = _per_view(hidden_grad, k)

    # Pass 2: each micro-batch under a tape, backpropagating its share.
    scale = precision.scaled(
        optimizer, tf.constant(1.0 / strategy.num_replicas_in_sync))
    grads, all_logits, all_soft = None, [], []
    sup_sum, dist_sum = 0.0, 0.0
    updated = [tf.zeros_like(value) for value in start]
    for j, x in enumerate(inputs):
      if grads is not None:
        # After the previous micro-batch's backward pass (recompute.after).
        x = recompute.after(x, next(g for g in grads if g is not None))
      soft = None
      if teacher is not None:
        soft = _float32(distillation.teacher_logits(teacher, x))
        all_soft.append(soft)
      with tf.GradientTape() as tape:
        projection, logits = model(x, training=True)
        targets, output_grads = [], []
        extra = tf.zeros([], loss_dtype)
        if projection is not None and pretrain:
          projection = _float32(projection)
          targets.append(projection)
          output_grads.append(hidden_grads[j] *
                              tf.cast(scale, projection.dtype))
        if logits is not None:
          logits = _float32(logits)
          all_logits.append(logits)
          sup_j, dist_j = example_losses(
              label_parts[j], logits,
              None if labeled_parts is None else labeled_parts[j], soft)
          sup_sum += sup_j
          sup_share = tf.math.divide_no_nan(sup_j, tf.cast(count, loss_dtype))
          if dist_j is None:
            extra += sup_share
          else:
            dist_sum += dist_j
            extra += distillation.weighted(
                dist_j / tf.cast(examples, loss_dtype), sup_share,
                loss_config.label_loss_weight)
        if j == 0:
          decay = tf.cast(optimization.weight_decay_loss(
              model, loss_config.weight_decay, loss_config.optimizer),
                          loss_dtype)
          extra += decay
        targets.append(extra)
        output_grads.append(tf.cast(scale, loss_dtype))
      grads = _add(grads, tape.gradient(targets, model.trainable_variables,
                                        output_gradients=output_grads))
      for i, (v, value) in enumerate(zip(statistics, start)):
        updated[i] += v.read_value()
        v.assign(value)
    for v, total in zip(statistics, updated):
      v.assign(total / k)

    loss = 0.0
    if con_loss is not None:
      loss += con_loss
      if metrics is not None:
        metrics_lib.update_contrastive(metrics, con_loss, logits_con,
                                       labels_con)
    if all_logits:
      logits = _interleaved(all_logits) if pretrain else tf.concat(
          all_logits, 0)
      sup_loss = tf.math.divide_no_nan(sup_sum, tf.cast(count, sup_sum.dtype))
      if teacher is not None:
        soft = tf.concat(all_soft, 0)
        dist_loss = dist_sum / tf.cast(examples, dist_sum.dtype)
        loss += distillation.weighted(dist_loss, sup_loss,
                                      loss_config.label_loss_weight)
        if metrics is not None:
          metrics_lib.update_distillation(metrics, dist_loss, soft, logits)
      else:
        loss += sup_loss
      if metrics is not None:
        metrics_lib.update_supervised(metrics, sup_loss, labels_full, logits,
                                      labeled_full)
    loss += tf.cast(decay, loss.dtype)
    if metrics is not None:
      metrics['weight_decay'].update_state(decay)
      metrics['total_loss'].update_state(loss)
    return loss, precision.unscaled(optimizer, grads)

  return fn
