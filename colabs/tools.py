"""Helpers the notebooks in colabs/ share: a tiny model to start from, figures.

Notebooks import the library (`tf2`) for everything SimCLR; this module only
holds what several notebooks need around it, so that no notebook pastes it:

- `train_tiny_model`: when a notebook is given no model, it trains a small
  one with `run.py` on the embedded digits (a minute on a 2-core CPU). The
  tests train it once and pass its path to every notebook.
- `find_saved_model`: the SavedModel of a model directory (a published
  model's `saved_model/`, or the newest `saved_model/<step>` of run.py).
- `prediction_grid`: images titled with predicted and true labels.
- `save_figure`: writes a matplotlib figure as PNG into the figure folder.

Runs from the repository root (the notebooks' working directory) or with the
root on PYTHONPATH.
"""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A ResNet-18 at 16 px with a 16-d projection: contrastive pretraining plus
# the linear head trained beside it on a stopped gradient (the published
# `lineareval_while_pretraining`), so the model has 10-class logits.
TINY_FLAGS = ('--dataset=digits', '--use_tpu=False', '--resnet_depth=18',
              '--train_batch_size=32', '--eval_batch_size=128',
              '--proj_out_dim=16', '--learning_rate=0.1', '--warmup_epochs=0',
              '--mode=train_then_eval', '--train_mode=pretrain',
              '--eval_split=test')


def train_tiny_model(model_dir, data_dir=None, train_steps=6, image_size=16):
  """Pretrains a tiny ResNet-18 on digits with run.py, unless already done.

  Args:
    model_dir: where run.py writes the checkpoint, `saved_model/<step>` and
      `result.json`. A model_dir that already holds an export is reused.
    data_dir: TFDS data directory for the digits (None: the TFDS default).
    train_steps: pretraining steps (batches of 32).
    image_size: image height and width in pixels.

  Returns:
    model_dir as a string.

  Raises:
    RuntimeError: run.py failed; the message ends with its log.
  """
  model_dir = os.fspath(model_dir)
  if find_saved_model(model_dir, required=False):
    return model_dir
  args = [sys.executable, str(ROOT / 'run.py'), *TINY_FLAGS,
          f'--image_size={image_size}', f'--train_steps={train_steps}',
          f'--checkpoint_steps={train_steps}', f'--model_dir={model_dir}']
  if data_dir:
    args.append(f'--data_dir={os.fspath(data_dir)}')
  pythonpath = os.pathsep.join(
      p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p)
  env = dict(os.environ, PYTHONPATH=pythonpath, TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run(args, capture_output=True, text=True, env=env,
                          cwd=ROOT, check=False)
  if result.returncode != 0:
    raise RuntimeError(f'{" ".join(args)} failed:\n{result.stderr[-4000:]}')
  return model_dir


def find_saved_model(path, required=True):
  """The SavedModel at or under `path`.

  Args:
    path: a SavedModel directory (holding saved_model.pb); a published TF2
      model directory (holding `saved_model/`); or a run.py model_dir, whose
      newest export `saved_model/<step>` is taken.
    required: raise when there is none; else return None.

  Returns:
    The SavedModel directory as a string.

  Raises:
    FileNotFoundError: no SavedModel there (only with `required`).
  """
  path = pathlib.Path(path)
  for candidate in (path, path / 'saved_model'):
    if (candidate / 'saved_model.pb').exists():
      return str(candidate)
  export_root = path / 'saved_model'
  steps = sorted(int(p.name) for p in export_root.glob('*')
                 if p.name.isdigit() and (p / 'saved_model.pb').exists())
  if steps:
    return str(export_root / str(steps[-1]))
  if required:
    raise FileNotFoundError(
        f'No SavedModel at {path} nor in {export_root}: run.py exports one '
        'after evaluation (--mode=train_then_eval or --mode=eval).')
  return None


def save_figure(fig, figure_dir, name, dpi=100):
  """Saves `fig` as `figure_dir/name.png` and returns the path."""
  os.makedirs(figure_dir, exist_ok=True)
  path = os.path.join(os.fspath(figure_dir), f'{name}.png')
  fig.savefig(path, dpi=dpi, bbox_inches='tight')
  return path


def prediction_grid(images, predicted, true_labels, title, columns=8):
  """A figure of images, each titled with its predicted and true label.

  Args:
    images: (N, H, W, 3) floats in [0, 1].
    predicted: (N,) predicted class ids.
    true_labels: (N,) true class ids.
    title: the figure's title.
    columns: images per row.

  Returns:
    A matplotlib Figure; correct predictions are titled in green, wrong
    ones in red.
  """
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = -(-len(images) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.2, rows * 1.5),
                           squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  for ax, image, pred, true in zip(axes.flat, images, predicted, true_labels):
    ax.imshow(image)
    ax.set_title(f'pred {pred}\ntrue {true}', fontsize=9,
                 color='green' if pred == true else 'red')
  fig.suptitle(title)
  fig.tight_layout()
  return fig
