"""Named experiments: `python run.py --config=<name> [flags]`.

A preset's settings replace the flag defaults; flags given on the command
line still win, and `--helpconfig` prints the result. Each preset's
docstring holds the command that runs it, so the README, the benchmarks and
the notebooks share one source (big_vision's config files).

Settings a checkpoint determines (the architecture when fine-tuning or
evaluating) are left out of the presets that start from a checkpoint: they
are read from it. Paths (--model_dir, --checkpoint, --teacher_checkpoint,
--data_dir) are always given on the command line.
"""

import inspect

from tf2.config import validation

# The embedded digits: 8x8 scans, so 8 px loses nothing (and is 4x cheaper
# than 16 px on a CPU); the test split has 355 images.
_DIGITS = dict(dataset='digits', use_tpu=False, image_size=8,
               eval_split='test', eval_batch_size=512, cache_dataset=True)
# A model made here (not one read from a checkpoint): a 64-d projection.
_DIGITS_NEW_MODEL = dict(proj_out_dim=64)
# Fine-tuning, supervised training and distillation on the digits: SGD with
# Nesterov momentum and cosine decay, as the label-efficiency benchmark.
_DIGITS_SUPERVISED = dict(_DIGITS, mode='train_then_eval', optimizer='momentum',
                          weight_decay=1e-4, warmup_epochs=0,
                          train_batch_size=64)

# SimCLRv2 on ImageNet (paper, appendix): LARS, square-root scaling.
_IMAGENET = dict(dataset='imagenet2012', image_size=224,
                 eval_split='validation')
_IMAGENET_PRETRAIN = dict(
    _IMAGENET, train_mode='pretrain', train_batch_size=4096,
    train_epochs=800, learning_rate=0.1, learning_rate_scaling='sqrt',
    weight_decay=1e-4, temperature=0.1, memory_size=65536,
    memory_ema_decay=0.999)
# Fine-tuning from the first projection layer, without warm-up or weight
# decay, at batch 1024 (the published checkpoints' steps give 60 epochs for
# 1% and 30 for 10% and 100%).
_IMAGENET_FINETUNE = dict(
    _IMAGENET, mode='train_then_eval', train_mode='finetune',
    ft_proj_selector=1, fine_tune_after_block=-1, zero_init_logits_layer=True,
    optimizer='lars', learning_rate=0.005, learning_rate_scaling='sqrt',
    train_batch_size=1024, warmup_epochs=0, weight_decay=0.0)


def digits_quickstart_pretrain():
  """A few minutes of pretraining a ResNet-18 on the digits (quickstart).

    python run.py --config=digits_quickstart_pretrain --model_dir=/tmp/simclr_digits
  """
  return dict(_DIGITS, **_DIGITS_NEW_MODEL, resnet_depth=18,
              train_batch_size=128, train_epochs=10, learning_rate=1.0,
              use_blur=False)


def digits_quickstart_finetune():
  """A linear head on the quickstart's frozen encoder, then evaluation.

    python run.py --config=digits_quickstart_finetune --checkpoint=/tmp/simclr_digits --model_dir=/tmp/simclr_digits_ft
  """
  return dict(_DIGITS_SUPERVISED, train_mode='finetune', train_epochs=5,
              fine_tune_after_block=4, zero_init_logits_layer=True,
              learning_rate=0.1)


def digits_pretrain():
  """Recipe step 1: pretraining on all training digits, no labels.

    python run.py --config=digits_pretrain --model_dir=/tmp/digits_pretrain
  """
  return dict(_DIGITS, **_DIGITS_NEW_MODEL, mode='train_then_eval',
              train_mode='pretrain', resnet_depth=18, train_batch_size=128,
              train_epochs=60,
              learning_rate=1.0, weight_decay=1e-4, temperature=0.2,
              use_blur=False, color_jitter_strength=0.5, warmup_epochs=5,
              lineareval_while_pretraining=False, checkpoint_epochs=20)


def digits_finetune():
  """Recipe step 2: fine-tuning from the first projection layer on 10%.

  Pass --label_fraction=0.01 for 1% (one label per class), or
  --labels_per_class=N.

    python run.py --config=digits_finetune --checkpoint=/tmp/digits_pretrain --model_dir=/tmp/digits_ft10
  """
  return dict(_DIGITS_SUPERVISED, train_mode='finetune', label_fraction=0.1,
              ft_proj_selector=1, learning_rate=0.1, train_steps=300,
              checkpoint_steps=300)


def digits_distill():
  """Recipe step 3: distillation of the fine-tuned teacher into a student.

  The student (ResNet-18; --resnet_depth=10 for a smaller one) learns the
  teacher's predictions on all training digits.

    python run.py --config=digits_distill --teacher_checkpoint=/tmp/digits_ft10 --model_dir=/tmp/digits_distill
  """
  return dict(_DIGITS_SUPERVISED, **_DIGITS_NEW_MODEL, train_mode='distill',
              label_fraction=0.1, resnet_depth=18, learning_rate=0.4,
              train_epochs=15,
              checkpoint_epochs=15)


def digits_supervised():
  """The baseline of the recipe: the same network from scratch, 10% labels.

    python run.py --config=digits_supervised --model_dir=/tmp/digits_supervised
  """
  return dict(_DIGITS_SUPERVISED, **_DIGITS_NEW_MODEL, train_mode='finetune',
              label_fraction=0.1, resnet_depth=18, learning_rate=0.4,
              train_steps=300,
              checkpoint_steps=300)


def cifar10_pretrain():
  """CIFAR-10 pretraining on one GPU, as in the reference README.

    python run.py --config=cifar10_pretrain --data_dir=<tfds dir> --model_dir=/tmp/simclr_test
  """
  return dict(train_mode='pretrain', train_batch_size=512, train_epochs=1000,
              learning_rate=1.0, weight_decay=1e-4, temperature=0.5,
              dataset='cifar10', image_size=32, eval_split='test',
              resnet_depth=18, use_blur=False, color_jitter_strength=0.5,
              use_tpu=False)


def cifar10_linear_eval():
  """Linear evaluation of a CIFAR-10 model, as in the reference README.

    python run.py --config=cifar10_linear_eval --checkpoint=/tmp/simclr_test --data_dir=<tfds dir> --model_dir=/tmp/simclr_test_ft
  """
  return dict(mode='train_then_eval', train_mode='finetune',
              fine_tune_after_block=4, zero_init_logits_layer=True,
              global_bn=False, optimizer='momentum', learning_rate=0.1,
              weight_decay=0.0, train_epochs=100, train_batch_size=512,
              warmup_epochs=0, dataset='cifar10', image_size=32,
              eval_split='test', use_tpu=False)


def imagenet_pretrain_r50_1x_sk0():
  """SimCLRv2 pretraining of ResNet-50 (1x, no SK) on ImageNet, on a TPU.

  On GPUs add --use_tpu=False.

    python run.py --config=imagenet_pretrain_r50_1x_sk0 --data_dir=gs://<bucket>/tensorflow_datasets --model_dir=gs://<bucket>/r50_1x_sk0
  """
  return dict(_IMAGENET_PRETRAIN, resnet_depth=50, width_multiplier=1,
              sk_ratio=0.0)


def imagenet_pretrain_r152_3x_sk1():
  """SimCLRv2 pretraining of ResNet-152 (3x, SK) on ImageNet, on a TPU.

    python run.py --config=imagenet_pretrain_r152_3x_sk1 --data_dir=gs://<bucket>/tensorflow_datasets --model_dir=gs://<bucket>/r152_3x_sk1
  """
  return dict(_IMAGENET_PRETRAIN, resnet_depth=152, width_multiplier=3,
              sk_ratio=0.0625)


def imagenet_finetune_1pct():
  """Fine-tuning on 1% of the ImageNet labels for 60 epochs.

    python run.py --config=imagenet_finetune_1pct --checkpoint=gs://<bucket>/r50_1x_sk0 --data_dir=gs://<bucket>/tensorflow_datasets --model_dir=gs://<bucket>/ft_1pct
  """
  return dict(_IMAGENET_FINETUNE, dataset='imagenet2012_subset/1pct',
              train_epochs=60)


def imagenet_finetune_10pct():
  """Fine-tuning on 10% of the ImageNet labels for 30 epochs.

    python run.py --config=imagenet_finetune_10pct --checkpoint=gs://<bucket>/r50_1x_sk0 --data_dir=gs://<bucket>/tensorflow_datasets --model_dir=gs://<bucket>/ft_10pct
  """
  return dict(_IMAGENET_FINETUNE, dataset='imagenet2012_subset/10pct',
              train_epochs=30)


def imagenet_finetune_100pct():
  """Fine-tuning on all ImageNet labels for 30 epochs.

  The learning rate is the 1% / 10% one, not checked against the paper.

    python run.py --config=imagenet_finetune_100pct --checkpoint=gs://<bucket>/r50_1x_sk0 --data_dir=gs://<bucket>/tensorflow_datasets --model_dir=gs://<bucket>/ft_100pct
  """
  return dict(_IMAGENET_FINETUNE, train_epochs=30)


def imagenet_distill_r50():
  """Distillation of a fine-tuned teacher into a ResNet-50 on all of ImageNet.

  The teacher's predictions only (--label_loss_weight=0). Learning rate and
  epochs are where we would start, not checked against the paper.

    python run.py --config=imagenet_distill_r50 --teacher_checkpoint=gs://<bucket>/ft_1pct --data_dir=gs://<bucket>/tensorflow_datasets --model_dir=gs://<bucket>/distill_r50
  """
  return dict(_IMAGENET, mode='train_then_eval', train_mode='distill',
              resnet_depth=50, width_multiplier=1, sk_ratio=0.0,
              distillation_temperature=1.0, label_loss_weight=0.0,
              optimizer='lars', learning_rate=0.1,
              learning_rate_scaling='sqrt', train_batch_size=1024,
              train_epochs=400, weight_decay=1e-4)


_PRESETS = {f.__name__: f for f in (
    digits_quickstart_pretrain, digits_quickstart_finetune, digits_pretrain,
    digits_finetune, digits_distill, digits_supervised, cifar10_pretrain,
    cifar10_linear_eval, imagenet_pretrain_r50_1x_sk0,
    imagenet_pretrain_r152_3x_sk1, imagenet_finetune_1pct,
    imagenet_finetune_10pct, imagenet_finetune_100pct, imagenet_distill_r50)}


def names():
  return tuple(_PRESETS)


def _preset(name):
  if name not in _PRESETS:
    raise validation.ConfigError(f'--config={name} is no preset: pass one of '
                                 f'{", ".join(_PRESETS)}.')
  return _PRESETS[name]


def get(name):
  """{setting: value} of a preset.

  Raises:
    validation.ConfigError: no preset of that name.
  """
  return _preset(name)()


def command(name):
  """The preset's docstring: what it is and the command that runs it."""
  return inspect.getdoc(_preset(name))
