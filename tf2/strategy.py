"""Chooses the tf.distribute strategy: TPU, GPUs, or the CPU."""

import tensorflow as tf


class NoTPUError(RuntimeError):
  """--use_tpu was requested where no TPU can be reached."""


def build_strategy(use_tpu, tpu_name=None, tpu_zone=None, gcp_project=None,
                   master=None):
  """TPUStrategy as published, else MirroredStrategy over the local GPUs.

  With no GPU, MirroredStrategy runs one replica on the CPU.
  """
  if use_tpu:
    try:
      resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
          tpu=tpu_name or master, zone=tpu_zone, project=gcp_project)
      tf.config.experimental_connect_to_cluster(resolver)
      tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
      raise NoTPUError(
          f'--use_tpu=True (the published default) but no TPU was found '
          f'({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}). '
          'Pass --use_tpu=False to train on the GPUs or the CPU of this '
          'machine, or --tpu_name to name your TPU.') from None
    return tf.distribute.TPUStrategy(resolver)
  gpus = tf.config.list_logical_devices('GPU')
  if gpus:
    return tf.distribute.MirroredStrategy([d.name for d in gpus])
  cpus = tf.config.list_logical_devices('CPU')
  return tf.distribute.MirroredStrategy([cpus[0].name])
