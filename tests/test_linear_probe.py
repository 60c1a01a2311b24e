"""tf2/evaluation/linear_probe.py: the frozen-feature logistic regression."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn import linear_model

from tf2.data import pipeline
from tf2.evaluation import embeddings
from tf2.evaluation import linear_probe
from tf2.models import config as config_lib
from tf2.models import model as model_lib

TRAIN, TEST = 'train[:600]', 'test[:200]'


def test_the_held_out_part_is_stratified_and_partitions_the_split():
  labels = np.array([0] * 10 + [1] * 5 + [2])
  fit_part, held = linear_probe.held_out_split(labels, 0.2, seed=3)
  np.testing.assert_array_equal(np.sort(np.concatenate([fit_part, held])),
                                np.arange(16))
  # round(0.2 * 10) = 2, round(0.2 * 5) = 1, and the single 2 stays to fit.
  assert sorted(labels[held]) == [0, 0, 1]
  with pytest.raises(ValueError, match=r'\(0, 1\)'):
    linear_probe.held_out_split(labels, 1.0)


def test_the_regularisation_is_chosen_on_the_held_out_part():
  # Two informative dimensions among 50 noisy ones and few examples: a weak
  # penalty overfits the noise, a huge one predicts one class.
  rng = np.random.RandomState(0)
  labels = rng.randint(0, 3, size=90)
  centres = rng.normal(size=(3, 2)) * 3
  def features(y):
    return np.concatenate([centres[y] + rng.normal(size=(len(y), 2)),
                           rng.normal(size=(len(y), 50)) * 3], axis=1)
  test_labels = rng.randint(0, 3, size=300)
  result = linear_probe.linear_probe_accuracy(
      features(labels), labels, features(test_labels), test_labels,
      c_values=(1e-6, 1e-2, 1e4))
  assert result['linear_probe_c'] == 1e-2
  assert result['linear_probe_top_1_accuracy'] > 0.5  # Chance: 1/3.


def test_on_the_digits_it_beats_chance_and_agrees_with_a_direct_fit(
    tmp_path):
  model = model_lib.build_model(config_lib.ModelConfig(
      num_classes=10, resnet_depth=18, image_size=16, proj_out_dim=8,
      train_mode='finetune'))
  data_dir = str(tmp_path / 'tfds')
  builder = pipeline.get_builder('digits', data_dir)
  strategy = tf.distribute.get_strategy()

  def split(name):
    return pipeline.build_distributed_dataset(
        builder, 256, False, strategy, split=name, image_size=16,
        train_mode='finetune', labeled_only=True)

  # Part of the splits and two values of C keep the test to seconds:
  # features of a random network are tiny (norm ~0.75), so L-BFGS needs
  # hundreds of iterations for a weak penalty.
  c_values = (10.0, 100.0)
  evaluator = linear_probe.make_evaluator(
      strategy, lambda: split(TRAIN), split(TEST), c_values=c_values)
  results = evaluator(model)
  accuracy = results['eval/linear_probe_top_1_accuracy']
  # Chance is 10%; random ResNet features of digits are far better.
  assert accuracy > 0.5, results
  assert results['eval/linear_probe_c'] in c_values

  # The same fit straight from the embeddings the command writes.
  checkpoint = tf.train.Checkpoint(model=model).write(
      str(tmp_path / 'ckpt' / 'ckpt-1'))
  written = {}
  for name, split_name in (('train', TRAIN), ('test', TEST)):
    output = tmp_path / f'{name}.npz'
    embeddings.embed(checkpoint, 'digits', split_name, str(output),
                     data_dir=data_dir, image_size=16)
    written[name] = np.load(output)
  classifier = linear_model.LogisticRegression(
      C=results['eval/linear_probe_c'], solver='lbfgs', max_iter=1000).fit(
          written['train']['embeddings'], written['train']['labels'])
  direct = np.mean(classifier.predict(written['test']['embeddings']) ==
                   written['test']['labels'])
  # Features agree to float rounding; at most one prediction moves.
  count = len(written['test']['labels'])
  assert count == 200
  assert abs(direct - accuracy) <= 1 / count + 1e-9, (direct, accuracy)


@pytest.mark.slow
def test_run_reports_the_probe_beside_the_linear_head_and_knn(tmp_path):
  # Slow: the default grid's weakly regularised fits take L-BFGS hundreds of
  # iterations (about 50 s here for 145 digits).
  from tf2 import runner  # pylint: disable=g-import-not-at-top
  from tf2.config import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  given = dict(dataset='digits', use_tpu=False, resnet_depth=18, image_size=8,
               train_batch_size=32, eval_batch_size=128, proj_out_dim=16,
               learning_rate=0.1, warmup_epochs=0, eval_split='test',
               mode='train_then_eval', train_mode='finetune',
               label_fraction=0.1, train_steps=2, checkpoint_steps=2,
               eval_knn=True, knn_k=5, eval_linear_probe=True,
               model_dir=str(tmp_path / 'ft'), data_dir=str(tmp_path / 'tfds'))
  result = runner.run(experiment_lib.compose(given, None, given['model_dir']))
  for name in ('label_top_1_accuracy', 'knn_top_1_accuracy',
               'linear_probe_top_1_accuracy'):
    assert 0 <= result[f'eval/{name}'] <= 1, name
  assert result['eval/linear_probe_c'] in linear_probe.DEFAULT_C_VALUES
