"""Weighted kNN evaluation (Wu et al. 2018) of frozen features."""

import numpy as np
import pytest
import tensorflow as tf

from tf2.evaluation import knn
from tf2.models import config as config_lib
from tf2.models import model as model_lib


def _unit(angle):
  return [np.cos(angle), np.sin(angle)]


# One query at angle 0; cosine similarities 1.0 (class 0), 0.5 and 0.4
# (class 1) and 0.2 (class 2). With k=3 the majority is class 1 (two votes to
# one), but at T=0.07 the single, much closer class-0 neighbour outweighs
# them: exp(1/.07) > exp(.5/.07) + exp(.4/.07).
_TRAIN = np.array([_unit(0.0), _unit(np.arccos(0.5)), _unit(-np.arccos(0.4)),
                   _unit(np.arccos(0.2))], np.float32)
_TRAIN_LABELS = np.array([0, 1, 1, 2])
_QUERY = np.array([[1.0, 0.0]], np.float32)


def _numpy_knn_scores(train, labels, queries, num_classes, k, temperature):
  train = train / np.linalg.norm(train, axis=1, keepdims=True)
  queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
  scores = np.zeros([len(queries), num_classes])
  for row, similarity in enumerate(queries @ train.T):
    for j in np.argsort(-similarity)[:k]:
      scores[row, labels[j]] += np.exp(similarity[j] / temperature)
  return scores


def _clusters(num_per_class, seed):
  """Three tight clusters around orthogonal centres in 16-d."""
  rng = np.random.default_rng(seed)
  centres = np.eye(16)[:3] * 5.0
  labels = np.repeat(np.arange(3), num_per_class)
  features = centres[labels] + 0.3 * rng.normal(size=(len(labels), 16))
  return features.astype(np.float32), labels


def test_weighted_vote_beats_majority_and_matches_numpy():
  pred, scores = knn.knn_predict(_TRAIN, _TRAIN_LABELS, _QUERY, 3, k=3,
                                 temperature=0.07)
  expected = _numpy_knn_scores(_TRAIN, _TRAIN_LABELS, _QUERY, 3, 3, 0.07)
  np.testing.assert_allclose(scores, expected, rtol=1e-5)
  assert scores[0, 2] == 0.0  # The fourth neighbour is beyond k.
  assert pred.tolist() == [0]
  # A high temperature makes the weights nearly equal: the majority wins.
  pred, _ = knn.knn_predict(_TRAIN, _TRAIN_LABELS, _QUERY, 3, k=3,
                            temperature=100.0)
  assert pred.tolist() == [1]


def test_features_are_l2_normalised_inside():
  scales = np.array([[3.0], [0.1], [7.0], [0.5]], np.float32)
  _, scaled = knn.knn_predict(_TRAIN * scales, _TRAIN_LABELS, 4 * _QUERY, 3,
                              k=3)
  _, plain = knn.knn_predict(_TRAIN, _TRAIN_LABELS, _QUERY, 3, k=3)
  np.testing.assert_allclose(scaled, plain, rtol=1e-5)


def test_k_larger_than_train_set_is_clipped():
  _, scores = knn.knn_predict(_TRAIN, _TRAIN_LABELS, _QUERY, 3, k=200)
  expected = _numpy_knn_scores(_TRAIN, _TRAIN_LABELS, _QUERY, 3, 4, 0.07)
  np.testing.assert_allclose(scores, expected, rtol=1e-5)
  assert scores[0, 2] > 0.0  # All four train points voted.


@pytest.mark.parametrize('k', [1, 5, 200])
def test_separable_clusters_are_classified_perfectly(k):
  train, train_labels = _clusters(30, seed=0)
  test, test_labels = _clusters(10, seed=1)
  results = knn.knn_accuracy(train, train_labels, test, test_labels, 3, k=k)
  assert results == {'knn_top_1_accuracy': 1.0, 'knn_top_5_accuracy': 1.0}


def test_chunked_similarities_give_the_same_scores_as_one_batch():
  rng = np.random.default_rng(0)
  train = rng.normal(size=(50, 8)).astype(np.float32)
  labels = rng.integers(0, 5, size=50)
  test = rng.normal(size=(23, 8)).astype(np.float32)
  one_pred, one = knn.knn_predict(train, labels, test, 5, k=10,
                                  batch_size=1024)
  chunked_pred, chunked = knn.knn_predict(train, labels, test, 5, k=10,
                                          batch_size=4)
  np.testing.assert_allclose(chunked, one, rtol=1e-6)
  np.testing.assert_array_equal(chunked_pred, one_pred)
  np.testing.assert_allclose(
      one, _numpy_knn_scores(train, labels, test, 5, 10, 0.07), rtol=1e-4)


def test_top_5_counts_the_five_best_classes():
  scores = np.array([[0, 1, 2, 3, 4, 5, 6],    # Label 1 ranks 6th: miss.
                     [0, 1, 2, 3, 4, 5, 6],    # Label 2 ranks 5th: hit.
                     [6, 5, 4, 3, 2, 1, 0]], np.float32)
  assert knn.top_k_accuracy(scores, [1, 2, 0], 5) == pytest.approx(2 / 3)
  assert knn.top_k_accuracy(scores, [1, 2, 0], 1) == pytest.approx(1 / 3)
  # Fewer than five classes: top-5 is top-C, always a hit.
  assert knn.top_k_accuracy(np.eye(3), [2, 0, 1], 5) == 1.0


@pytest.mark.parametrize('bad', [dict(k=0), dict(temperature=0.0),
                                 dict(batch_size=0)])
def test_invalid_arguments_are_rejected(bad):
  with pytest.raises(ValueError, match='pass'):
    knn.knn_predict(_TRAIN, _TRAIN_LABELS, _QUERY, 3, **bad)


_NUM_IMAGES = 9  # Batches of 4, 4, then 1: one replica gets no rows.


def _images_and_labels():
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(_NUM_IMAGES, 8, 8, 3)).astype(np.float32)
  labels = np.array([0, 2, 1, 1, 0, 2, 2, 1, 0])
  return images, labels


def _distributed(strategy, how):
  images, labels = _images_and_labels()
  elements = (images, {'labels': tf.one_hot(labels, 3)})
  if how == 'experimental_distribute_dataset':
    dataset = tf.data.Dataset.from_tensor_slices(elements).batch(4)
    return strategy.experimental_distribute_dataset(dataset)
  def input_fn(context):
    batch = context.get_per_replica_batch_size(4)
    return tf.data.Dataset.from_tensor_slices(elements).batch(batch)
  return strategy.distribute_datasets_from_function(input_fn)


@pytest.fixture(scope='module')
def models(request):
  """A tiny ResNet-18 per strategy, built in its scope, shared by tests."""
  built = {}

  def get(strategy):
    if strategy not in built:
      with strategy.scope():
        built[strategy] = model_lib.build_model(config_lib.ModelConfig(
            num_classes=3, resnet_depth=18, image_size=8,
            train_mode='finetune'))
    return built[strategy]

  del request
  return get


@pytest.mark.parametrize('strategy_name', ['default', 'two_cpu_strategy'])
@pytest.mark.parametrize('how', ['experimental_distribute_dataset',
                                 'distribute_datasets_from_function'])
def test_extract_features_returns_every_example_in_order(
    strategy_name, how, models, request):
  strategy = (tf.distribute.get_strategy() if strategy_name == 'default'
              else request.getfixturevalue(strategy_name))
  model = models(strategy)
  features, labels = knn.extract_features(model, _distributed(strategy, how),
                                          strategy)
  images, expected_labels = _images_and_labels()
  expected = model.endpoints(images, training=False)['final_avg_pool']
  assert features.shape == (_NUM_IMAGES, 512)
  np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_array_equal(labels, expected_labels)


def test_extract_features_stops_after_max_steps(two_cpu_strategy, models):
  features, labels = knn.extract_features(
      models(two_cpu_strategy),
      _distributed(two_cpu_strategy, 'experimental_distribute_dataset'),
      two_cpu_strategy, max_steps=1)
  assert features.shape[0] == 4
  np.testing.assert_array_equal(labels, _images_and_labels()[1][:4])


def test_evaluate_knn_scores_eval_features_against_train_features(
    two_cpu_strategy, models):
  model = models(two_cpu_strategy)
  dataset = lambda: _distributed(two_cpu_strategy,  # pylint: disable=g-long-lambda
                                 'experimental_distribute_dataset')
  results = knn.evaluate_knn(model, two_cpu_strategy, dataset(), dataset(), 3,
                             k=3, temperature=0.1)
  images, labels = _images_and_labels()
  features = model.endpoints(images, training=False)['final_avg_pool'].numpy()
  expected = knn.knn_accuracy(features, labels, features, labels, 3, k=3,
                              temperature=0.1)
  assert results.keys() == expected.keys()
  for name, value in expected.items():
    assert results[name] == pytest.approx(value)
