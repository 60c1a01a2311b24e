"""Helpers the notebooks and benchmarks share: run.py runs, models, figures.

Notebooks import the library (`tf2`) for everything SimCLR; this module only
holds what several notebooks (and `benchmarks/label_efficiency.py`) need
around it, so that none of them pastes it:

- `run_py`: one `python run.py --config=<preset>` run with overrides, in a
  subprocess (a notebook's kernel holds no training state, and a failed run
  cannot take the kernel with it); returns the run's `result.json`.
  `run_py_process` is the bare subprocess, for tests of run.py itself.
- `read_result`, `read_flags`, `num_labeled_examples`, `top1`: what a
  finished run wrote.
- `train_tiny_model`: when a notebook is given no model, it trains a small
  one on the embedded digits (a minute on a 2-core CPU). The tests train it
  once and pass its path to every notebook.
- `find_saved_model`: the SavedModel of a model directory (a published
  model's `saved_model/`, or the newest `saved_model/<step>` of run.py).
- `prediction_grid`, `save_figure`: figures of predictions, saved as PNG.

Every file is read and written through `tf.io.gfile` (`tf2.runtime.fileio`), so
model directories and figure folders may be Cloud Storage URLs.
"""

import collections
import os
import subprocess
import sys
import time

from tf2.checkpoints import export
from tf2.config import experiment as experiment_lib
from tf2.runtime import fileio
from tf2.runtime import model_dir as model_dir_lib

# The project: the folder holding run.py, tf2/ and colabs/.
ROOT = fileio.dirname(fileio.dirname(fileio.abspath(__file__)))
RUN_PY = fileio.join(ROOT, 'run.py')

# Lines of the log a failed run's error message ends with.
_LOG_TAIL_LINES = 40


class RunPyError(RuntimeError):
  """run.py exited with an error; the message ends with its log."""


def _command(args):
  """argv of `python run.py *args`.

  run.py is addressed by its absolute path, so Python puts the project
  first on its import path whatever the working directory; relative paths
  in `args` mean what they mean to the caller.
  """
  return [sys.executable, RUN_PY, *map(str, args)]


def _environment():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')


def run_py_process(args, **kwargs):
  """Runs `python run.py *args` and waits for it (tests of run.py).

  Args:
    args: command-line arguments of run.py.
    **kwargs: for `subprocess.run` (capture_output, text, timeout, ...).

  Returns:
    subprocess.CompletedProcess; a failure is not raised (check=False).
  """
  return subprocess.run(_command(args), env=_environment(), check=False,
                        **kwargs)


def _run_logged(args, log_file):
  """Runs run.py, writing its output to `log_file` line by line.

  The log grows while the run goes on (a long run can be followed with
  `tail -f`). An interrupt (a notebook's stop button) stops run.py too.

  Returns:
    (exit code, the last lines of the output).
  """
  if fileio.dirname(log_file):
    fileio.makedirs(fileio.dirname(log_file))
  tail = collections.deque(maxlen=_LOG_TAIL_LINES)
  with fileio.gfile.GFile(log_file, 'w') as log, subprocess.Popen(
      _command(args), env=_environment(), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) as process:
    try:
      for line in process.stdout:
        log.write(line)
        log.flush()
        tail.append(line)
    except BaseException:
      process.kill()
      raise
  return process.returncode, ''.join(tail)


def log_path(model_dir):
  """The log of a run: `<model_dir>.log`, beside its model_dir."""
  return str(model_dir).rstrip('/') + '.log'


def read_result(model_dir):
  """The run's result.json (eval metrics of its last checkpoint) as a dict."""
  return fileio.read_json(model_dir_lib.path(model_dir, model_dir_lib.RESULT))


def read_flags(model_dir):
  """The run's flags.json: every setting, plus its example counts."""
  return fileio.read_json(model_dir_lib.path(model_dir, model_dir_lib.FLAGS))


def num_labeled_examples(model_dir):
  """How many labeled training examples the run used (its label subset)."""
  return read_flags(model_dir)['num_labeled_examples']


def top1(result):
  """Top-1 accuracy of the supervised head in a result.json dict."""
  return result['eval/label_top_1_accuracy']


def is_finished(model_dir):
  """Whether a run into model_dir finished: it wrote result.json."""
  return fileio.exists(model_dir_lib.path(model_dir, model_dir_lib.RESULT))


def run_py(preset, model_dir, skip_finished=False, verbose=True, **settings):
  """Runs `python run.py --config=<preset>` with overrides, in a subprocess.

  The command is printed (it is the recipe); its output goes to
  `log_path(model_dir)` as it comes. Settings are checked by name before
  anything runs, so a misspelt override fails here instead of in run.py's
  flag parser.

  Args:
    preset: a preset of tf2/presets.py (None: run.py's defaults).
    model_dir: where the run writes; may be a gs:// URL.
    skip_finished: when model_dir already holds a result.json, return it
      without running (a notebook or benchmark re-run continues where it
      stopped).
    verbose: print the command and how long it took.
    **settings: run.py flags overriding the preset, e.g.
      checkpoint='/tmp/pretrain', label_fraction=0.1; None values are left
      out.

  Returns:
    The run's result.json as a dict; None in --mode=train (nothing is
    evaluated).

  Raises:
    RunPyError: run.py failed; the message ends with the log's tail.
    ValueError: a setting that run.py does not have.
  """
  model_dir = str(model_dir)
  given = {name: value for name, value in settings.items()
           if value is not None}
  mode = experiment_lib.compose(given, preset, model_dir).run.mode
  if skip_finished and is_finished(model_dir):
    return read_result(model_dir)
  args = [*([f'--config={preset}'] if preset else []),
          f'--model_dir={model_dir}',
          *(f'--{name}={value}' for name, value in given.items())]
  if verbose:
    print('$ python run.py', ' '.join(args), flush=True)
  start = time.time()
  returncode, tail = _run_logged(args, log_path(model_dir))
  if returncode:
    raise RunPyError(
        f'run.py --config={preset} into {model_dir} failed (exit code '
        f'{returncode}); the log {log_path(model_dir)} ends:\n{tail}')
  if verbose:
    print(f'  {fileio.basename(model_dir)}: {time.time() - start:.0f} s',
          flush=True)
  return None if mode == 'train' else read_result(model_dir)


# The tiny model: the quickstart's ResNet-18 with the linear head trained
# beside pretraining on a stopped gradient (the published
# `lineareval_while_pretraining`), so that it has 10-class logits; batches
# of 32 and no warm-up, since it trains a handful of steps; evaluated and
# exported (train_then_eval) so that notebooks find a SavedModel.
TINY_PRESET = 'digits_quickstart_pretrain'
TINY_SETTINGS = dict(mode='train_then_eval', lineareval_while_pretraining=True,
                     train_batch_size=32, warmup_epochs=0)


def train_tiny_model(model_dir, data_dir=None, train_steps=6, image_size=16):
  """Pretrains a tiny ResNet-18 on the digits with run.py, unless done.

  Args:
    model_dir: where run.py writes the checkpoint, `saved_model/<step>` and
      `result.json`. A model_dir that holds a finished run is reused.
    data_dir: TFDS data directory for the digits (None: the TFDS default).
    train_steps: pretraining steps (batches of 32).
    image_size: image height and width in pixels.

  Returns:
    model_dir as a string.

  Raises:
    RunPyError: run.py failed; the message ends with its log.
  """
  run_py(TINY_PRESET, model_dir, skip_finished=True, data_dir=data_dir,
         image_size=image_size, train_steps=train_steps,
         checkpoint_steps=train_steps, **TINY_SETTINGS)
  return str(model_dir)


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
  path = str(path)
  export_root = model_dir_lib.path(path, model_dir_lib.SAVED_MODEL)
  for candidate in (path, export_root):
    if fileio.exists(fileio.join(candidate, 'saved_model.pb')):
      return candidate
  steps = export.exported_steps(path)
  if steps:
    return fileio.join(export_root, str(steps[-1]))
  if required:
    raise FileNotFoundError(
        f'No SavedModel at {path} nor in {export_root}: run.py exports one '
        'after evaluation (--mode=train_then_eval or --mode=eval).')
  return None


def save_figure(fig, figure_dir, name, dpi=100):
  """Saves `fig` as `figure_dir/name.png` and returns the path."""
  fileio.makedirs(str(figure_dir))
  path = fileio.join(figure_dir, f'{name}.png')
  with fileio.gfile.GFile(path, 'wb') as f:
    fig.savefig(f, format='png', dpi=dpi, bbox_inches='tight')
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
