"""Chooses the tf.distribute strategy: TPUs, GPUs of one or many machines.

The names follow Model Garden's runtime config: 'mirrored' (the GPUs of this
machine, else its CPU), 'multi_worker_mirrored' (the GPUs or CPUs of every
worker that TF_CONFIG names; collectives over the network), 'tpu'. With no
explicit choice, as published: a TPU when --use_tpu, else
multi_worker_mirrored when TF_CONFIG names a cluster, else mirrored.

On a cluster one worker is the chief: only it writes into model_dir
(checkpoints, summaries, results, exports, the run's record). The others
take part in every save (reading a synchronised variable is a collective
operation) but write into their own temporary folder, removed afterwards.
"""

import json
import os

import tensorflow as tf

from tf2.runtime import cluster

# The --distribution_strategy and --all_reduce_alg choices (settings.py
# offers these; '' means the default).
STRATEGIES = ('mirrored', 'multi_worker_mirrored', 'tpu')
ALL_REDUCE_ALGS = ('nccl', 'hierarchical_copy', 'ring')


class NoTPUError(RuntimeError):
  """--use_tpu was requested where no TPU can be reached."""


def cluster_in_tf_config():
  """Whether the TF_CONFIG environment variable names a cluster of workers."""
  try:
    config = json.loads(os.environ.get('TF_CONFIG') or '{}')
  except ValueError:
    return False
  cluster = config.get('cluster') or {}
  return sum(len(tasks) for tasks in cluster.values()) > 1


def strategy_name(distribution_strategy='', use_tpu=True):
  """The strategy to build: explicit, else TPU, TF_CONFIG, or mirrored."""
  if distribution_strategy:
    return distribution_strategy
  if use_tpu:
    return 'tpu'
  return 'multi_worker_mirrored' if cluster_in_tf_config() else 'mirrored'


def _tpu_strategy(tpu_name, tpu_zone, gcp_project, master):
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=tpu_name or master, zone=tpu_zone, project=gcp_project)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, RuntimeError, OSError, tf.errors.OpError) as e:
    # OSError: a --tpu_name the GCE metadata server (or the network) does
    # not know.
    raise NoTPUError(
        f'--use_tpu=True (the published default) but no TPU was found '
        f'({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}). '
        'Pass --use_tpu=False to train on the GPUs or the CPU of this '
        'machine (or of the cluster TF_CONFIG names), or --tpu_name to name '
        'your TPU.') from None
  return tf.distribute.TPUStrategy(resolver)


def _mirrored_strategy(all_reduce_alg):
  gpus = tf.config.list_logical_devices('GPU')
  if not gpus:
    # One replica on the CPU (several logical CPUs would only split it).
    cpus = tf.config.list_logical_devices('CPU')
    return tf.distribute.MirroredStrategy([cpus[0].name])
  cross_device_ops = {
      'nccl': tf.distribute.NcclAllReduce,
      'hierarchical_copy': tf.distribute.HierarchicalCopyAllReduce,
  }.get(all_reduce_alg)
  return tf.distribute.MirroredStrategy(
      [d.name for d in gpus],
      cross_device_ops=cross_device_ops() if cross_device_ops else None)


def _multi_worker_strategy(all_reduce_alg, cluster_wait_secs):
  """Forms the cluster TF_CONFIG names, waiting at most cluster_wait_secs."""
  tf_config = os.environ.get('TF_CONFIG')
  cluster.configure(tf_config, cluster_wait_secs)
  implementation = {
      'ring': tf.distribute.experimental.CommunicationImplementation.RING,
      'nccl': tf.distribute.experimental.CommunicationImplementation.NCCL,
  }.get(all_reduce_alg,
        tf.distribute.experimental.CommunicationImplementation.AUTO)
  options = tf.distribute.experimental.CommunicationOptions(
      implementation=implementation)
  try:
    with cluster.FormationWatch(tf_config, cluster_wait_secs):
      return tf.distribute.MultiWorkerMirroredStrategy(
          communication_options=options)
  except (tf.errors.OpError, RuntimeError) as e:
    raise cluster.ClusterError(cluster.formation_failure(
        e, tf_config, cluster_wait_secs)) from None


def build_strategy(use_tpu, tpu_name=None, tpu_zone=None, gcp_project=None,
                   master=None, distribution_strategy='', all_reduce_alg='',
                   cluster_wait_secs=cluster.DEFAULT_WAIT_S):
  """The strategy of the run (see the module docstring).

  multi_worker_mirrored must be built before TensorFlow runs any operation
  in the process (run.py builds it first thing after validation).

  Args:
    use_tpu, tpu_name, tpu_zone, gcp_project, master: the reference's TPU
      flags.
    distribution_strategy: one of STRATEGIES, or '' to choose as published.
    all_reduce_alg: the collective implementation: 'nccl' or
      'hierarchical_copy' for mirrored GPUs, 'ring' or 'nccl' across
      workers, '' for TensorFlow's choice.
    cluster_wait_secs: how long the tasks of a cluster wait for each other
      to join (see runtime/cluster.py).

  Raises:
    NoTPUError: a TPU was asked for and none answers.
    cluster.ClusterError: the cluster did not form within cluster_wait_secs.
  """
  name = strategy_name(distribution_strategy, use_tpu)
  if name == 'tpu':
    return _tpu_strategy(tpu_name, tpu_zone, gcp_project, master)
  if name == 'multi_worker_mirrored':
    return _multi_worker_strategy(all_reduce_alg, cluster_wait_secs)
  return _mirrored_strategy(all_reduce_alg)


def is_chief(strategy):
  """Whether this process writes model_dir (always, off a cluster)."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type == 'chief':
    return True
  has_chief = 'chief' in resolver.cluster_spec().as_dict()
  return task_type in (None, 'worker') and task_id == 0 and not has_chief


def is_multi_worker(strategy):
  """Whether the strategy spans several worker processes."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
    return False
  return len(resolver.cluster_spec().as_dict().get('worker', [])) + len(
      resolver.cluster_spec().as_dict().get('chief', [])) > 1


def worker_id(strategy):
  resolver = getattr(strategy, 'cluster_resolver', None)
  return 0 if resolver is None or resolver.task_id is None else int(
      resolver.task_id)
