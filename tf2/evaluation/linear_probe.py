"""Linear probe: logistic regression on frozen features, the transfer protocol.

The evaluation of the paper's transfer tables (SimCLR appendix B.8,
following Kornblith et al. 2019, "Do Better ImageNet Models Transfer
Better?"): an L2-regularised multinomial logistic regression trained with
L-BFGS on features of the frozen network, computed once on unaugmented
images (the evaluation preprocessing), with the regularisation chosen on a
held-out part of the training split and top-1 accuracy measured on the
evaluation split. Unlike the linear head trained with the network
(`linear_head.py`), it needs no training run and no learning rate; unlike
the kNN evaluation (`knn.py`), it fits the classifier the paper reports.

Regularisation: scikit-learn's `C` (inverse strength; its objective is
0.5 ||W||^2 + C * sum of cross-entropies) is searched over
`DEFAULT_C_VALUES`, one value per decade over the range of Kornblith et
al. (1e-6 to 1e5; they search 45 values, which costs four times more fits
for a finer choice). The C with the best held-out accuracy (the strongest
regularisation among ties) is then refitted on the whole training split.
Features are those the kNN evaluation reads, `final_avg_pool`, as is.
"""

import numpy as np
from sklearn import linear_model

from tf2.evaluation import knn

DEFAULT_C_VALUES = tuple(float(c) for c in np.logspace(-6, 5, 12))
DEFAULT_HELD_OUT_FRACTION = 0.2
DEFAULT_MAX_ITER = 1000


def held_out_split(labels, fraction, seed=0):
  """(fit indices, held-out indices), stratified by class.

  Each class keeps at least one example to fit on and holds out
  round(fraction * its count) of its examples (none if it has one).

  Args:
    labels: (N,) int class ids.
    fraction: in (0, 1).
    seed: of the random choice within each class.

  Returns:
    Two sorted int arrays partitioning range(N).
  """
  if not 0 < fraction < 1:
    raise ValueError(f'held-out fraction {fraction}: pass a value in (0, 1), '
                     'e.g. 0.2.')
  labels = np.asarray(labels)
  rng = np.random.RandomState(seed)
  held = []
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    count = min(int(round(fraction * len(members))), len(members) - 1)
    held.extend(members[:count])
  held = np.sort(np.asarray(held, dtype=np.int64))
  return np.setdiff1d(np.arange(len(labels)), held), held


def fit(features, labels, c, max_iter=DEFAULT_MAX_ITER):
  """An L2-regularised multinomial logistic regression, fitted by L-BFGS."""
  # Imported here: scikit-learn is only needed when probing.
  classifier = linear_model.LogisticRegression(C=c, solver='lbfgs',
                                               max_iter=max_iter)
  return classifier.fit(features, labels)


def _accuracy(classifier, features, labels):
  return float(np.mean(classifier.predict(features) == np.asarray(labels)))


def linear_probe_accuracy(train_features, train_labels, test_features,
                          test_labels, c_values=DEFAULT_C_VALUES,
                          held_out_fraction=DEFAULT_HELD_OUT_FRACTION, seed=0,
                          max_iter=DEFAULT_MAX_ITER):
  """Chooses C on held-out training features, refits, scores the test set.

  Args:
    train_features: (N_train, D) features of the labeled training split.
    train_labels: (N_train,) int class ids.
    test_features: (N_test, D) features of the evaluation split.
    test_labels: (N_test,) int class ids.
    c_values: the inverse regularisation strengths to try.
    held_out_fraction: the part of the training split held out to choose C.
    seed: of the held-out choice.
    max_iter: L-BFGS iterations per fit.

  Returns:
    {'linear_probe_top_1_accuracy': on the test set,
     'linear_probe_c': the chosen C,
     'linear_probe_held_out_accuracy': its accuracy on the held-out part}.
  """
  if not c_values:
    raise ValueError('c_values is empty: pass at least one C.')
  train_labels = np.asarray(train_labels)
  if len(np.unique(train_labels)) < 2:
    raise ValueError('The linear probe needs labeled training examples of '
                     'at least two classes.')
  fit_part, held = held_out_split(train_labels, held_out_fraction, seed)
  scores = []
  for c in sorted(c_values):
    classifier = fit(train_features[fit_part], train_labels[fit_part], c,
                     max_iter)
    scores.append((_accuracy(classifier, train_features[held],
                             train_labels[held]), c))
  # The best accuracy; among equals the smallest C (strongest penalty),
  # which max() keeps since it returns the first maximum.
  best_accuracy, best_c = max(scores, key=lambda s: s[0])
  classifier = fit(train_features, train_labels, best_c, max_iter)
  return {
      'linear_probe_top_1_accuracy': _accuracy(classifier, test_features,
                                               test_labels),
      'linear_probe_c': best_c,
      'linear_probe_held_out_accuracy': best_accuracy,
  }


def evaluate_linear_probe(model, strategy, train_dataset, eval_dataset,
                          train_steps=None, eval_steps=None,
                          endpoint='final_avg_pool', **probe_kwargs):
  """The linear probe of a model on two distributed datasets.

  Args:
    model: a Model (run in inference mode).
    strategy: the strategy both datasets are distributed with.
    train_dataset: the labeled training split with evaluation preprocessing
      (no augmentation), read once.
    eval_dataset: the evaluation split.
    train_steps, eval_steps: batches to read from each; None reads to the end.
    endpoint: the features (see `knn.extract_features`).
    **probe_kwargs: c_values, held_out_fraction, seed, max_iter of
      `linear_probe_accuracy`.

  Returns:
    The dict of `linear_probe_accuracy`.
  """
  train_features, train_labels = knn.extract_features(
      model, train_dataset, strategy, endpoint, train_steps)
  test_features, test_labels = knn.extract_features(
      model, eval_dataset, strategy, endpoint, eval_steps)
  return linear_probe_accuracy(train_features, train_labels, test_features,
                               test_labels, **probe_kwargs)


def make_evaluator(strategy, train_dataset_fn, eval_dataset, eval_steps=None,
                   **probe_kwargs):
  """`fn(model) -> {'eval/linear_probe_...': value}` for the runner.

  Args:
    strategy: the run's strategy.
    train_dataset_fn: () -> the distributed labeled training split with
      evaluation preprocessing; called at each evaluation (one pass).
    eval_dataset: the distributed evaluation split.
    eval_steps: batches of eval_dataset to read; None reads to the end.
    **probe_kwargs: see `linear_probe_accuracy`.
  """

  def linear_probe_eval(model):
    results = evaluate_linear_probe(model, strategy, train_dataset_fn(),
                                    eval_dataset, eval_steps=eval_steps,
                                    **probe_kwargs)
    return {f'eval/{name}': value for name, value in results.items()}

  return linear_probe_eval
