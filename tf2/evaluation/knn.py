"""Weighted k-nearest-neighbour evaluation of a frozen representation.

The kNN protocol of the instance-discrimination literature (Wu et al. 2018,
"Unsupervised Feature Learning via Non-Parametric Instance Discrimination"),
reported beside linear evaluation because it needs no training: each test
image's l2-normalised feature is compared by cosine similarity with the
features of all training images (the "memory bank"), its k most similar
training images vote for their labels with weight exp(similarity / T), and
the prediction is the class with the largest summed weight.

Defaults follow Wu et al.: k=200 and T=0.07 (T=0.1 is also common, e.g. in
MoCo's and InstDisc's later code; lower T lets the nearest neighbours
dominate the vote). Features are the encoder output, `final_avg_pool`, the
same features linear evaluation reads.
"""

import numpy as np
import tensorflow as tf

DEFAULT_K = 200
DEFAULT_TEMPERATURE = 0.07


def _check_arguments(k, temperature, batch_size):
  if k < 1:
    raise ValueError(f'k={k}: pass a number of neighbours >= 1.')
  if temperature <= 0:
    raise ValueError(f'temperature={temperature}: pass a temperature > 0.')
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size}: pass a chunk size >= 1.')


def _vote(similarities, neighbour_labels, num_classes, temperature):
  """Summed vote weights per class.

  Args:
    similarities: (B, k) cosine similarities of the k nearest neighbours.
    neighbour_labels: (B, k) int32 labels of those neighbours.
    num_classes: C.
    temperature: T of the exp(similarity / T) weights.

  Returns:
    (B, C) float32 class scores.
  """
  weights = tf.exp(similarities / temperature)
  rows = tf.shape(similarities)[0]
  # Scatter-add into row * C + label instead of one-hot (B, k, C), which
  # would take k times more memory (200 x for ImageNet's 1000 classes).
  segments = (tf.range(rows)[:, None] * num_classes + neighbour_labels)
  scores = tf.math.unsorted_segment_sum(
      tf.reshape(weights, [-1]), tf.reshape(segments, [-1]),
      rows * num_classes)
  return tf.reshape(scores, [rows, num_classes])


def knn_predict(train_features, train_labels, test_features, num_classes,
                k=DEFAULT_K, temperature=DEFAULT_TEMPERATURE, batch_size=1024):
  """Weighted kNN class scores and predictions of test features.

  Similarities are computed `batch_size` test rows at a time, so memory is
  (batch_size x N_train) rather than (N_test x N_train); the train features
  are held whole.

  Args:
    train_features: (N_train, D) memory-bank features (need not be
      normalised: they are l2-normalised here).
    train_labels: (N_train,) int class ids in [0, num_classes).
    test_features: (N_test, D) query features (normalised here).
    num_classes: C.
    k: number of neighbours; clipped to N_train.
    temperature: T of the exp(similarity / T) vote weights.
    batch_size: test rows per similarity chunk.

  Returns:
    (top1_pred (N_test,) int64 numpy array, class_scores (N_test, C) float32
    numpy array). Ties go to the lower class id, here and in
    `top_k_accuracy`, so a top-1 hit is always a top-5 hit.
  """
  _check_arguments(k, temperature, batch_size)
  train = tf.math.l2_normalize(tf.cast(train_features, tf.float32), axis=1)
  test = tf.math.l2_normalize(tf.cast(test_features, tf.float32), axis=1)
  labels = tf.cast(train_labels, tf.int32)
  k = min(int(k), int(train.shape[0]))
  scores = []
  for start in range(0, int(test.shape[0]), batch_size):
    similarity = tf.matmul(test[start:start + batch_size], train,
                           transpose_b=True)
    top_similarity, top_index = tf.math.top_k(similarity, k=k)
    scores.append(_vote(top_similarity, tf.gather(labels, top_index),
                        num_classes, temperature))
  if scores:
    class_scores = tf.concat(scores, 0).numpy()
  else:
    class_scores = np.zeros([0, num_classes], np.float32)
  # np.argmax also returns the first (lowest) class of a tie.
  return np.argmax(class_scores, axis=1), class_scores


def top_k_accuracy(class_scores, labels, k):
  """Fraction of rows whose label is among their k highest-scoring classes.

  Args:
    class_scores: (N, C) scores.
    labels: (N,) int class ids.
    k: clipped to C.

  Returns:
    float in [0, 1].
  """
  class_scores = np.asarray(class_scores)
  k = min(k, class_scores.shape[1])
  # Stable sort on the negated scores: ties ranked by lower class id, as in
  # knn_predict's argmax.
  top = np.argsort(-class_scores, axis=1, kind='stable')[:, :k]
  return float(np.mean(np.any(top == np.asarray(labels)[:, None], axis=1)))


def knn_accuracy(train_features, train_labels, test_features, test_labels,
                 num_classes, k=DEFAULT_K, temperature=DEFAULT_TEMPERATURE,
                 batch_size=1024):
  """Top-1 and top-5 accuracy of `knn_predict` (top-min(5, C) when C < 5).

  Args:
    train_features, train_labels, test_features, num_classes, k,
      temperature, batch_size: as in `knn_predict`.
    test_labels: (N_test,) int class ids.

  Returns:
    {'knn_top_1_accuracy': float, 'knn_top_5_accuracy': float}.
  """
  _, class_scores = knn_predict(train_features, train_labels, test_features,
                                num_classes, k, temperature, batch_size)
  return {
      'knn_top_1_accuracy': top_k_accuracy(class_scores, test_labels, 1),
      'knn_top_5_accuracy': top_k_accuracy(class_scores, test_labels, 5),
  }


def extract_features(model, dataset, strategy, endpoint='final_avg_pool',
                     max_steps=None):
  """Features of one endpoint and labels of a distributed eval dataset.

  Args:
    model: a Model (`model.endpoints(images, training=False)`).
    dataset: distributed dataset of per-replica (images, {'labels': one_hot}),
      e.g. `data.build_distributed_dataset(..., is_training=False)` (one
      pass; with a repeating dataset pass max_steps).
    strategy: the strategy the dataset is distributed with.
    endpoint: name of the endpoint; 'final_avg_pool' (= 'proj_head_input')
      is the encoder output that linear evaluation also reads.
    max_steps: stop after this many global batches; None reads to the end.

  Returns:
    (features (N, D) float32 numpy array, labels (N,) int64 numpy array;
    spatial endpoints such as `block_group4` are flattened to D = H*W*C):
    rows in the order the replicas' batches are gathered, replica 0 first
    within each step (the dataset's order for `experimental_distribute_dataset`
    and for one-pipeline `distribute_datasets_from_function`). Features and
    labels always stay paired.
  """

  def features_of(images):
    features = model.endpoints(images, training=False)[endpoint]
    return tf.reshape(features, [tf.shape(features)[0], -1])

  def step(images, labels):
    # A last partial batch smaller than the number of replicas leaves some
    # replicas no rows, and TensorFlow's CPU convolution mis-shapes an empty
    # batch (it returns the input's shape); such replicas run one dummy row
    # and return none.
    one_row = tf.zeros(tf.concat([[1], tf.shape(images)[1:]], 0), images.dtype)
    features = tf.cond(tf.shape(images)[0] > 0,
                       lambda: features_of(images),
                       lambda: features_of(one_row)[:0])
    return features, tf.argmax(labels, axis=1)

  @tf.function
  def run_step(batch):
    images, labels = batch
    return strategy.run(step, (images, labels['labels']))

  features, labels = [], []
  for i, batch in enumerate(dataset):
    if max_steps is not None and i >= max_steps:
      break
    step_features, step_labels = run_step(batch)
    features.extend(t.numpy() for t in
                    strategy.experimental_local_results(step_features))
    labels.extend(t.numpy() for t in
                  strategy.experimental_local_results(step_labels))
  if not features:
    raise ValueError('The dataset yielded no batch: nothing to evaluate.')
  return np.concatenate(features, 0), np.concatenate(labels, 0)


def evaluate_knn(model, strategy, train_dataset, eval_dataset, num_classes,
                 k=DEFAULT_K, temperature=DEFAULT_TEMPERATURE, train_steps=None,
                 eval_steps=None, endpoint='final_avg_pool'):
  """kNN accuracy of `eval_dataset` against the features of `train_dataset`.

  Args:
    model: a Model.
    strategy: the strategy both datasets are distributed with.
    train_dataset: distributed memory-bank dataset, with eval preprocessing
      (no augmentation), e.g. the train split built with is_training=False.
    eval_dataset: distributed query dataset.
    num_classes: C.
    k, temperature: see `knn_predict`.
    train_steps, eval_steps: batches to read from each; None reads to the end.
    endpoint: see `extract_features`.

  Returns:
    {'knn_top_1_accuracy': float, 'knn_top_5_accuracy': float}.
  """
  train_features, train_labels = extract_features(
      model, train_dataset, strategy, endpoint, train_steps)
  test_features, test_labels = extract_features(
      model, eval_dataset, strategy, endpoint, eval_steps)
  return knn_accuracy(train_features, train_labels, test_features,
                      test_labels, num_classes, k, temperature)
