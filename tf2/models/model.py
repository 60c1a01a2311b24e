"""SimCLR model: encoder, projection head and supervised head.

Checkpoint format: `Model` keeps its parts in the attributes `resnet_model`,
`_projection_head` (with its list `linear_layers`) and `supervised_head`
(with `linear_layer`); each `LinearLayer` holds `dense` and `bn_relu`. These
names are the object graph of the published TF2 checkpoints and SavedModels
(`model/resnet_model/...`, `model/_projection_head/linear_layers/0/...`,
`model/supervised_head/linear_layer/dense/...`); see resnet.py for the
encoder's part.
"""

import tensorflow as tf
import tf_keras

from tf2.data import blur
from tf2.models import batch_norm
from tf2.models import config as config_lib
from tf2.models import resnet

PROJ_HEAD_MODES = ('none', 'linear', 'nonlinear')
TRAIN_MODES = ('pretrain', 'finetune')


class LinearLayer(tf_keras.layers.Layer):
  """Dense layer, optionally followed by batch norm (no ReLU here).

  Args:
    num_classes: output width, or a callable of the input shape (the hidden
      layers of the projection head keep their input's width).
    use_bias: with `use_bn` the bias is the batch norm's beta instead of the
      dense layer's own bias.
    use_bn: add a batch norm after the dense layer.
  """

  def __init__(self, num_classes, use_bias=True, use_bn=False,
               batch_norm_decay=0.9, global_bn=False, **kwargs):
    super().__init__(**kwargs)
    self.num_classes = num_classes
    self.use_bn = use_bn
    self._dense_kwargs = dict(
        kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.01),
        use_bias=use_bias and not use_bn)
    # A width that depends on the input is only known in build().
    self.dense = (None if callable(num_classes) else
                  tf_keras.layers.Dense(num_classes, **self._dense_kwargs))
    if use_bn:
      self.bn_relu = batch_norm.BatchNormRelu(
          relu=False, center=use_bias, batch_norm_decay=batch_norm_decay,
          global_bn=global_bn)

  def build(self, input_shape):
    if self.dense is None:
      self.dense = tf_keras.layers.Dense(int(self.num_classes(input_shape)),
                                         **self._dense_kwargs)
    super().build(input_shape)

  def call(self, inputs, training=None):
    outputs = self.dense(inputs)
    if self.use_bn:
      outputs = self.bn_relu(outputs, training=training)
    return outputs


class ProjectionHead(tf_keras.layers.Layer):
  """The MLP on top of the encoder used by the contrastive loss.

  SimCLRv2 uses 3 layers and fine-tunes from the middle of the head
  (`ft_proj_selector`), which the call returns beside the head's output.
  """

  def __init__(self, proj_head_mode='nonlinear', num_proj_layers=3,
               proj_out_dim=128, ft_proj_selector=0, batch_norm_decay=0.9,
               global_bn=False, **kwargs):
    super().__init__(**kwargs)
    if proj_head_mode not in PROJ_HEAD_MODES:
      raise ValueError(f'proj_head_mode={proj_head_mode!r}: use one of '
                       f'{PROJ_HEAD_MODES}.')
    self.proj_head_mode = proj_head_mode
    self.ft_proj_selector = ft_proj_selector
    bn = dict(batch_norm_decay=batch_norm_decay, global_bn=global_bn)
    self.linear_layers = []
    if proj_head_mode == 'linear':
      self.linear_layers = [LinearLayer(proj_out_dim, use_bias=False,
                                        use_bn=True, name='l_0', **bn)]
    elif proj_head_mode == 'nonlinear':
      for j in range(num_proj_layers):
        last = j == num_proj_layers - 1
        self.linear_layers.append(LinearLayer(
            proj_out_dim if last else (lambda shape: shape[-1]),
            use_bias=not last, use_bn=True, name=f'nl_{j}', **bn))
    if not 0 <= ft_proj_selector <= len(self.linear_layers):
      raise ValueError(
          f'ft_proj_selector={ft_proj_selector} but the head has '
          f'{len(self.linear_layers)} layers: use 0..{len(self.linear_layers)}'
          ' (0 = the encoder output).')

  def call(self, inputs, training=None):
    """Returns (head output, input of the supervised head), both (B, d)."""
    hiddens = [inputs]
    for j, layer in enumerate(self.linear_layers):
      outputs = layer(hiddens[-1], training=training)
      if self.proj_head_mode == 'nonlinear' and j < len(self.linear_layers) - 1:
        outputs = tf.nn.relu(outputs)
      hiddens.append(outputs)
    return hiddens[-1], hiddens[self.ft_proj_selector]


class SupervisedHead(tf_keras.layers.Layer):
  """Linear classifier; its variables are named `head_supervised/...`."""

  def __init__(self, num_classes, name='head_supervised', **kwargs):
    super().__init__(name=name, **kwargs)
    self.linear_layer = LinearLayer(num_classes, name='linear_layer')

  def call(self, inputs, training=None):
    return self.linear_layer(inputs, training=training)


class Model(tf_keras.Model):
  """ResNet with projection head and (optionally) supervised head.

  Calling it returns `(projection_output, supervised_logits)` as the
  reference does: in fine-tuning the first is None; in pretraining the
  second is None unless `lineareval_while_pretraining`, in which case the
  supervised head sees the features through a stop_gradient.

  In pretraining with `training=True` the input carries two augmented views
  concatenated on channels (B, H, W, 6); they are split, optionally blurred,
  and stacked on the batch axis (2B, H, W, 3).
  """

  def __init__(self, config: config_lib.ModelConfig, **kwargs):
    super().__init__(**kwargs)
    if config.train_mode not in TRAIN_MODES:
      raise ValueError(f'train_mode={config.train_mode!r}: use one of '
                       f'{TRAIN_MODES}.')
    self.config = config
    bn = dict(batch_norm_decay=config.batch_norm_decay,
              global_bn=config.global_bn)
    finetune = config.train_mode == 'finetune'
    self.resnet_model = resnet.Resnet(
        config.resnet_depth, config.width_multiplier,
        cifar_stem=config.use_cifar_stem, sk_ratio=config.sk_ratio,
        se_ratio=config.se_ratio,
        fine_tune_after_block=config.fine_tune_after_block if finetune else -1,
        recompute_blocks=config.recompute_blocks, name='resnet', **bn)
    self._projection_head = ProjectionHead(
        config.proj_head_mode, config.num_proj_layers, config.proj_out_dim,
        config.ft_proj_selector, name='projection_head', **bn)
    if finetune or config.lineareval_while_pretraining:
      self.supervised_head = SupervisedHead(config.num_classes)
    else:
      self.supervised_head = None

  def _split_views(self, inputs, training, seed=None):
    """(B, H, W, 3k) -> (kB, H, W, 3), blurring views in pretraining.

    Three channels are one view (e.g. the exported model called with
    trainable=True): nothing to split. Several views are split in any mode,
    so that Keras can also trace the pretraining model in inference mode
    with the two-view input it was trained on (SavedModel export). `seed`:
    see `endpoints`.
    """
    views = inputs.shape[-1] // 3 if inputs.shape[-1] else 1
    if views <= 1:
      return inputs
    pretraining = training and self.config.train_mode == 'pretrain'
    if pretraining and self.config.fine_tune_after_block > -1:
      raise ValueError('fine_tune_after_block > -1 freezes layers, which '
                       'pretraining does not support: pass '
                       '--fine_tune_after_block=-1.')
    views = tf.split(inputs, views, axis=-1)
    if pretraining and self.config.use_blur:
      size = self.config.image_size
      views = blur.batch_random_blur(views, size, size, seed=seed)
    return tf.concat(views, 0)

  def views(self, inputs, training=False, seed=None):
    """The network's input batch: views split on the batch axis, blurred.

    What a forward pass feeds the encoder (see `_split_views`); a
    (kB, H, W, 3) result passes through a later call unchanged, so a train
    step may slice it into micro-batches whose blur draws are the whole
    batch's (training/microbatch.py).
    """
    return self._split_views(inputs, training, seed)

  def endpoints(self, inputs, training=False, seed=None):
    """All named outputs of one forward pass, as the SavedModel returns them.

    Args:
      inputs: (B, H, W, 3) images in [0, 1] (or (B, H, W, 6) in pretraining
        with training=True).
      training: batch-norm mode (batch statistics and moving-average updates).
      seed: optional (2,) stateless seed of the pretraining blur (a seeded
        run passes one per step and replica, see reproducibility.py); None
        draws from TensorFlow's global generator, as published.

    Returns:
      dict with `initial_conv`, `initial_max_pool`, `block_group1..4`,
      `final_avg_pool`, `proj_head_input`, `proj_head_output`,
      `supervised_head_input` and, when the model has a supervised head,
      `logits_sup`.
    """
    features = self._split_views(inputs, training, seed)
    hiddens, outputs = self.resnet_model(features, training=training,
                                         return_endpoints=True)
    outputs['proj_head_input'] = hiddens
    proj_out, sup_in = self._projection_head(hiddens, training=training)
    outputs['proj_head_output'] = proj_out
    outputs['supervised_head_input'] = sup_in
    if self.supervised_head is not None:
      if self.config.train_mode == 'pretrain':
        # Linear eval during pretraining must not shape the representation.
        sup_in = tf.stop_gradient(sup_in)
      outputs['logits_sup'] = self.supervised_head(sup_in, training=training)
    return outputs

  def call(self, inputs, training=None, seed=None):
    outputs = self.endpoints(inputs, training=bool(training), seed=seed)
    logits = outputs.get('logits_sup')
    if self.config.train_mode == 'finetune':
      return None, logits
    return outputs['proj_head_output'], logits


class _CreationOrder:
  """Holds variables without Keras tracking them (no extra checkpoint keys)."""

  def __init__(self, variables):
    self.variables = tuple(variables)


def build_model(config: config_lib.ModelConfig, build=True) -> Model:
  """Creates a Model and, with `build`, its variables (one eval pass).

  Building eagerly with a dummy batch makes the variables exist before a
  checkpoint is restored or an optimizer is created, so restores are checked
  immediately instead of deferred. The order in which the variables were
  created is recorded: it is the order of the TF1 graph's variables, which
  is how TF1 checkpoints map onto this model (`tf1_mapping.py`).
  """
  model = Model(config)
  if build:
    created = []

    def record(next_creator, **kwargs):
      variable = next_creator(**kwargs)
      created.append(variable)
      return variable

    size = config.image_size
    with tf.variable_creator_scope(record):
      model.endpoints(tf.zeros([1, size, size, 3]), training=False)
    model.creation_order = _CreationOrder(created)
  return model


def variables_in_creation_order(model: Model):
  """The model's variables in the order its first forward pass created them."""
  order = getattr(model, 'creation_order', None)
  if order is None:
    raise ValueError('The creation order is only known for models made by '
                     'tf2.models.model.build_model(config, build=True).')
  return list(order.variables)
