"""Seeded runs (--seed): every random draw a function of the seed and the step.

With --seed a run repeats itself: two runs of one command on the same
machine and software end with bitwise identical weights, and so does a run
killed at any point (kill -9, also in the middle of a checkpoint save) and
resumed with the same command. What is drawn, and from what:

  * Model initialisation, and Python's, NumPy's and TensorFlow's global
    generators: `seed_run`, before any model is built. With --deterministic
    it also turns on TensorFlow's op determinism, which GPU reductions and
    convolutions need to repeat; on CPUs the kernels used here repeat
    without it.
  * The input pipeline: file order, shuffle buffer and each example's crop,
    flip and colour draws (data.py), from `pipeline_seed(seed, start_step,
    pipeline)`.
  * The train step's draws: the model's batch blur of the two views, the
    memory buffer's blur of its keys and augment_on_device's colour
    distortion, stateless, from `step_key(seed, stream, (global step,
    replica))`. Without --seed the blur draws from TensorFlow's global
    generator, as published, whose position no checkpoint holds.

Where a resumed run goes on reading: the data order is a function of the
step, not a saved position. A seeded run rebuilds its input pipeline after
every checkpoint, seeded by (seed, that checkpoint's step), and a run
resumed from the checkpoint builds the very same pipeline
(`training.train`); so the checkpoint keeps exactly its published keys
(`model/...`, `optimizer/...`, `global_step`) and costs no byte more. Saving
the iterator instead was measured and set aside (TensorFlow 2.21):
  - tf.distribute's iterators cannot be checkpointed: DistributedIterator is
    not trackable (tensorflow#56372), and the per-device buffers of its
    MultiDeviceIterator have no saved state (tensorflow#24408).
  - A plain tf.data iterator can be, but its state holds the shuffle buffer
    of decoded images and the prefetched batches: 0.77 MB for the 8 px
    digits at batch 16, 2.8 MB at 64 px. On ImageNet with one pipeline
    feeding 8 GPUs at batch 4096 (an estimate, not measured) the shuffle
    buffer alone is 5120 decoded images, ~2.5 GB in every checkpoint: 10x a
    ResNet-50 training checkpoint (~200 MB). Symbolic checkpointing
    (`tf.data.Options.experimental_symbolic_checkpoint`) leaves out the
    prefetched batches (0.34 MB instead of 0.77) but still saves the shuffle
    buffer, and refuses the cache TFDS puts on small datasets. And an
    iterator restored into a pipeline with `experimental_slack` (which
    data.py sets) never yields.
The price of restarting instead: each restart refills the shuffle buffer
(10 per-replica batches, 50 at 32 px or less), negligible with checkpoints
every epoch (the default) but noticeable with checkpoints every few steps;
and each stretch between checkpoints starts a fresh random pass over the
split. With whole epochs between checkpoints (--checkpoint_epochs) each
stretch reads one pass per epoch, to within half a batch, as the reference.
"""

import numpy as np
import tensorflow as tf
import tf_keras

# Streams of the train step's draws: every kind of draw has its own key at
# each step and replica, so no two share random numbers.
AUGMENT = 0  # augment_on_device (color_augment.make_augment_fn).
BLUR = 1  # The model's batch blur of the views (model.Model._split_views).
MEMORY_BLUR = 2  # The memory buffer's blur of its keys' view.


def seed_run(seed, deterministic=False):
  """Seeds the process before models are built; nothing without a seed.

  Args:
    seed: the run's --seed, or None (fresh randomness, as published).
    deterministic: also turn on TensorFlow's op determinism (it needs the
      seed: unseeded random ops then fail).
  """
  if seed is None:
    return
  tf_keras.utils.set_random_seed(seed)
  if deterministic:
    tf.config.experimental.enable_op_determinism()


def pipeline_seed(seed, start_step, pipeline_id):
  """The seed of one input pipeline that starts reading at `start_step`.

  Mixed (NumPy's SeedSequence) rather than added, so that the pipelines of
  one restart and those of other restarts never share seeds.

  Args:
    seed: the run's --seed, >= 0.
    start_step: the global step the pipeline's first batch is trained at.
    pipeline_id: the input pipeline (worker) it feeds.

  Returns:
    int in [0, 2**31): TFDS's file shuffle, the shuffle buffer and the
    per-example draws take it.
  """
  state = np.random.SeedSequence([seed, start_step, pipeline_id])
  return int(state.generate_state(1)[0] >> 1)


def step_key(seed, stream, step_seed):
  """The stateless key of one stream of draws at one step and replica.

  Args:
    seed: the run's --seed (int >= 0).
    stream: AUGMENT, BLUR or MEMORY_BLUR.
    step_seed: (2,) int tensor (global step, replica id).

  Returns:
    (2,) int64 key for tf.random.stateless_* ops.
  """
  key = tf.constant([seed, stream], tf.int64)
  for part in tf.unstack(tf.cast(step_seed, tf.int64)):
    key = tf.random.experimental.stateless_fold_in(key, part)
  return key
