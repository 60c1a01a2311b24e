"""The notebooks in colabs/ run headless on the embedded digits.

Each notebook runs in a Jupyter kernel (this interpreter) from the repository
root, with quick parameters injected after its "parameters" cell, starting
from one tiny model that run.py trains once per test run. A cell error fails
the test; the executed notebook is kept in the test's tmp_path.

To test a new notebook, add one line to RUNS: a name for the run, the
notebook's file name and the parameters that make it quick (figure_dir,
work_dir and data_dir are passed to every notebook). Optionally add a
function to CHECKS that reads what the run printed.
"""

import fcntl
import json
import os
import pathlib
import re
import sys

import nbclient
import nbformat
import pytest

from tests import notebook_tools

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLABS = ROOT / 'colabs'
sys.path.insert(0, str(ROOT))
from colabs import tools  # pylint: disable=g-import-not-at-top,wrong-import-position

CELL_TIMEOUT_S = 300

# Run name -> (notebook, quick parameters). 'model', 'saved_model' and 'data'
# stand for the shared tiny model_dir, its SavedModel and the digits data_dir.
RUNS = {
    'load_and_inference': ('load_and_inference.ipynb', dict(
        model_path='model', num_images=16)),
    'finetuning': ('finetuning.ipynb', dict(
        model_path='model', head_steps=4, full_steps=2)),
    # Offline: ImageNet is not in data_dir, the local model is evaluated.
    'evaluate_offline': ('evaluate_published_models.ipynb', dict(
        local_models=['model'], benchmark_data_dir='data')),
    # The benchmark branch, with digits standing in for ImageNet.
    'evaluate_benchmark': ('evaluate_published_models.ipynb', dict(
        published_models=['saved_model', '/nonexistent/saved_model'],
        benchmark_data_dir='data', benchmark_dataset='digits',
        benchmark_split='test', benchmark_image_size=16)),
}


@pytest.fixture(scope='session')
def tiny_model(tmp_path_factory):
  """A tiny pretrained model_dir (checkpoint + SavedModel) and its data_dir.

  pytest-xdist workers share the parent of their temporary directories
  within one test run: the first worker trains, the others wait for its lock
  and reuse the model.
  """
  base = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    base = base.parent
  shared = base / 'colabs_tiny_model'
  shared.mkdir(exist_ok=True)
  with open(shared / 'lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    model_dir = tools.train_tiny_model(shared / 'model',
                                       data_dir=shared / 'data')
  return dict(model=model_dir, data=str(shared / 'data'),
              saved_model=tools.find_saved_model(model_dir))


@pytest.fixture(scope='session')
def kernel_env(tmp_path_factory):
  """Environment in which the test kernel runs this interpreter."""
  jupyter_path = notebook_tools.write_kernel_spec(
      str(tmp_path_factory.mktemp('jupyter')))
  pythonpath = os.pathsep.join(
      p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p)
  return dict(JUPYTER_PATH=jupyter_path, PYTHONPATH=pythonpath,
              TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2',
              MPLBACKEND='Agg')


def _resolve(value, tiny_model):
  """Replaces the placeholders 'model' and 'data' with the shared paths."""
  if isinstance(value, list):
    return [_resolve(v, tiny_model) for v in value]
  return tiny_model.get(value, value) if isinstance(value, str) else value


def _text_outputs(notebook):
  return '\n'.join(output.get('text', '') for cell in notebook.cells
                   if cell.cell_type == 'code' for output in cell.outputs)


def _execute(run, tiny_model, kernel_env, out_dir):
  """Executes RUNS[run]; saves the executed notebook into out_dir.

  Returns:
    (executed notebook, the figure_dir it was given).
  """
  parameters = dict(figure_dir=str(out_dir / 'figures'),
                    work_dir=str(out_dir / 'work'), data_dir=tiny_model['data'])
  name, quick = RUNS[run]
  parameters.update({k: _resolve(v, tiny_model) for k, v in quick.items()})
  notebook = nbformat.read(COLABS / name, as_version=4)
  notebook_tools.inject_parameters(notebook, parameters)
  with pytest.MonkeyPatch.context() as mp:
    for key, value in kernel_env.items():
      mp.setenv(key, value)
    try:
      notebook_tools.execute(notebook, cwd=ROOT, timeout=CELL_TIMEOUT_S)
    finally:
      nbformat.write(notebook, out_dir / name)  # Readable after a failure.
  return notebook, out_dir / 'figures'


def check_load_and_inference(text, tiny_model):
  del tiny_model  # Unused.
  assert 'ResNet-18 1x' in text
  assert re.search(r'[\d,]+ parameters', text)
  difference = float(re.search(r'two logits: (\S+)', text).group(1))
  assert difference < 1e-3


def check_finetuning(text, tiny_model):
  del tiny_model  # Unused.
  assert 'Supervised head set to zero.' in text
  steps = RUNS['finetuning'][1]
  assert f'linear_head/ckpt-{steps["head_steps"]}' in text
  assert f'full_network/ckpt-{steps["full_steps"]}' in text
  # Stage 1 freezes the encoder (fine_tune_after_block=4); stage 2 does not.
  counts = [int(c.replace(',', '')) for c in re.findall(
      r'(?:linear_head|full_network): ([\d,]+) parameters', text)]
  assert len(counts) == 2 and counts[0] < counts[1]


def _assert_top1_is_run_py_eval(text, tiny_model):
  """The notebook's digits top-1 is run.py's eval of the same model."""
  top1 = float(re.search(r'top-1 ([\d.]+)%', text).group(1))
  result = json.loads(
      (pathlib.Path(tiny_model['model']) / 'result.json').read_text())
  assert top1 == pytest.approx(100 * result['eval/label_top_1_accuracy'],
                               abs=0.06)


def check_evaluate_offline(text, tiny_model):
  assert 'imagenet2012 is not available' in text
  assert 'digits test split instead' in text
  _assert_top1_is_run_py_eval(text, tiny_model)


def check_evaluate_benchmark(text, tiny_model):
  assert 'not available' not in text
  assert 'skipped (not readable here): /nonexistent/saved_model' in text
  assert '1 model(s)' in text
  _assert_top1_is_run_py_eval(text, tiny_model)


CHECKS = {
    'load_and_inference': check_load_and_inference,
    'finetuning': check_finetuning,
    'evaluate_offline': check_evaluate_offline,
    'evaluate_benchmark': check_evaluate_benchmark,
}


@pytest.mark.parametrize('run', sorted(RUNS))
def test_notebook_runs_shows_and_saves_figures(run, tiny_model, kernel_env,
                                               tmp_path):
  notebook, figure_dir = _execute(run, tiny_model, kernel_env, tmp_path)
  name = RUNS[run][0]
  pngs = sorted(figure_dir.glob('*.png'))
  assert pngs, f'{name} saved no figure in {figure_dir}'
  sizes = [notebook_tools.png_size(p) for p in pngs]
  assert any(w > 200 and h > 200 for w, h in sizes), sizes
  shown = [o for cell in notebook.cells if cell.cell_type == 'code'
           for o in cell.outputs if 'image/png' in o.get('data', {})]
  assert len(shown) >= len(pngs), f'{name} saved figures it did not show'
  if run in CHECKS:
    CHECKS[run](_text_outputs(notebook), tiny_model)


@pytest.mark.parametrize('name', sorted(p.name for p in COLABS.glob('*.ipynb')))
def test_committed_notebook_has_no_outputs(name):
  notebook = nbformat.read(COLABS / name, as_version=4)
  nbformat.validate(notebook)
  assert notebook_tools.parameters_cell_index(notebook) >= 0
  cells = notebook_tools.outputs_and_counts(notebook)
  assert not cells, (f'colabs/{name} has outputs or execution counts in '
                     f'cells {cells}; run `python colabs/strip_outputs.py` '
                     'before committing.')


def test_every_notebook_is_tested():
  from tests import test_colabs_recipe  # pylint: disable=g-import-not-at-top
  runs = list(RUNS.values()) + list(test_colabs_recipe.RECIPE_RUNS.values())
  assert sorted(p.name for p in COLABS.glob('*.ipynb')) == sorted(
      {name for name, _ in runs})


def test_inject_parameters_refuses_unknown_names():
  notebook = nbformat.read(COLABS / 'finetuning.ipynb', as_version=4)
  with pytest.raises(ValueError, match='head_stpes'):
    notebook_tools.inject_parameters(notebook, dict(head_stpes=1))


def test_png_size_reads_the_header(tmp_path):
  path = tmp_path / 'x.png'
  path.write_bytes(b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR'
                   + (640).to_bytes(4, 'big') + (480).to_bytes(4, 'big'))
  assert notebook_tools.png_size(path) == (640, 480)


def test_a_cell_error_fails_the_execution(kernel_env, tmp_path):
  notebook = nbformat.v4.new_notebook(cells=[
      nbformat.v4.new_code_cell('x = 1'),
      nbformat.v4.new_code_cell("raise ValueError('broken cell')")])
  with pytest.MonkeyPatch.context() as mp:
    for key, value in kernel_env.items():
      mp.setenv(key, value)
    with pytest.raises(nbclient.exceptions.CellExecutionError,
                       match='broken cell'):
      notebook_tools.execute(notebook, cwd=tmp_path, timeout=60)


def test_find_saved_model_accepts_the_three_layouts(tmp_path):
  for export in ('direct', 'published/saved_model', 'run/saved_model/2',
                 'run/saved_model/10'):
    (tmp_path / export).mkdir(parents=True)
    (tmp_path / export / 'saved_model.pb').touch()
  assert tools.find_saved_model(tmp_path / 'direct') == str(
      tmp_path / 'direct')
  assert tools.find_saved_model(tmp_path / 'published') == str(
      tmp_path / 'published/saved_model')
  assert tools.find_saved_model(tmp_path / 'run') == str(
      tmp_path / 'run/saved_model/10')
  assert tools.find_saved_model(tmp_path / 'empty', required=False) is None
  with pytest.raises(FileNotFoundError, match='run.py exports one'):
    tools.find_saved_model(tmp_path / 'empty')
