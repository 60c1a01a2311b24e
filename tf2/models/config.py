"""The model's architecture as a plain frozen config, for the library.

`ModelConfig` is what `model.build_model` needs and nothing else: a notebook
or a test builds any model from keyword arguments, without flags. Its field
names and defaults are those of the reference's run.py flags (the settings
of `config/settings.py` take their defaults from here).
`task.model_config(experiment)` derives a ModelConfig from an experiment (a student trained by distillation is built in
fine-tuning mode, `global_bn` only matters with several replicas), and
`architecture.model_config_for` derives one from a checkpoint.
"""

import dataclasses


def projection_layer(ft_proj_selector, num_proj_layers):
  """--ft_proj_selector as a layer number: -1 means the last layer."""
  return num_proj_layers if ft_proj_selector == -1 else ft_proj_selector


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything that decides the model's architecture and forward pass.

  Attributes mirror the reference flags of the same names. `cifar_stem=None`
  means "as published": the CIFAR stem for images of 32 px or less.
  """
  num_classes: int = 1000
  resnet_depth: int = 50
  width_multiplier: int = 1
  sk_ratio: float = 0.0
  se_ratio: float = 0.0
  image_size: int = 224
  cifar_stem: bool | None = None
  batch_norm_decay: float = 0.9
  global_bn: bool = True
  train_mode: str = 'pretrain'
  fine_tune_after_block: int = -1
  proj_head_mode: str = 'nonlinear'
  num_proj_layers: int = 3
  proj_out_dim: int = 128
  ft_proj_selector: int = 0
  lineareval_while_pretraining: bool = True
  use_blur: bool = True
  # Not architecture: how the training pass trades compute for memory.
  recompute_blocks: bool = False

  @property
  def use_cifar_stem(self) -> bool:
    if self.cifar_stem is None:
      return self.image_size <= 32
    return self.cifar_stem

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)
