"""The semi-supervised recipe notebooks run headless on the embedded digits.

`colabs/distillation_self_training.ipynb` distills the shared tiny model into
a ResNet-10 in a Python loop; `colabs/semi_supervised_recipe.ipynb` runs
pretraining, fine-tuning on label subsets and distillation as run.py
commands. Both are executed as in tests/test_colabs.py (same kernel, same
tiny model, quick parameters injected), and what they print is checked.
"""

import json
import pathlib
import re

import pytest

from tests import notebook_tools
from tests import test_colabs
from tests.test_colabs import kernel_env  # pylint: disable=unused-import
from tests.test_colabs import tiny_model  # pylint: disable=unused-import

# Run name -> (notebook, quick parameters); 'model' and 'data' stand for the
# shared tiny model_dir and the digits data_dir, as in test_colabs.RUNS.
RECIPE_RUNS = {
    'distillation_self_training': ('distillation_self_training.ipynb', dict(
        teacher_path='model', image_size=16, student_depth=10, batch_size=16,
        steps=6, eval_every=3)),
    # The shared tiny model stands in for pretraining; one student only.
    'semi_supervised_recipe': ('semi_supervised_recipe.ipynb', dict(
        pretrained_path='model', image_size=8, fractions=[0.01, 0.1],
        distill_fractions=[0.1], finetune_steps=4, distill_steps=4)),
}


def _tiny_model_top1(tiny_model):
  result = json.loads(
      (pathlib.Path(tiny_model['model']) / 'result.json').read_text())
  return result['eval/label_top_1_accuracy']


def check_distillation_self_training(text, tiny_model):
  quick = RECIPE_RUNS['distillation_self_training'][1]
  assert f'student ResNet-{quick["student_depth"]}' in text
  student_params, teacher_params = (
      int(n.replace(',', '')) for n in re.findall(r'([\d,]+) parameters', text))
  assert student_params < teacher_params  # ResNet-10 < ResNet-18.
  # One measurement before training and one every eval_every steps.
  measured = [int(s) for s in re.findall(r'step\s+(\d+): distillation', text)]
  assert measured == list(range(0, quick['steps'] + 1, quick['eval_every']))
  final = re.search(r'student top-1: ([\d.]+), teacher top-1: ([\d.]+), '
                    r'agreement: ([\d.]+)', text)
  assert final, text[-2000:]
  student, teacher, agreement = (float(x) for x in final.groups())
  assert 0.0 <= student <= 1.0 and 0.0 <= agreement <= 1.0
  # The teacher is the tiny model in inference mode on the same 355 test
  # images as run.py's evaluation of it.
  assert teacher == pytest.approx(_tiny_model_top1(tiny_model), abs=2e-3)


def check_semi_supervised_recipe(text, work_dir):
  """The printed table holds each run's result.json top-1 and label count."""
  rows = [line for line in text.splitlines() if line.startswith('| ')]
  assert len(rows) == 3, text[-2000:]  # Header, fine-tuned, distilled.
  counts = [int(n) for n in re.findall(r'\((\d+) labels\)', rows[0])]
  assert [c for c in counts] == [
      len(json.loads((work_dir / f'finetune_{f:g}' / 'label_subset.json')
                     .read_text())['labeled_ids']) for f in (0.01, 0.1)]
  # Class balanced: at least one per class, about the fraction of 1,442.
  assert 10 <= counts[0] <= 30 and 130 <= counts[1] <= 160, counts
  assert rows[1].startswith('| fine-tuned |')
  assert rows[2].startswith('| distilled ResNet-10 |')
  finetuned = [float(x) for x in rows[1].split('|')[2:4]]
  distilled = rows[2].split('|')[2:4]
  assert distilled[0].strip() == '-'  # Only the 10% teacher was distilled.
  for value, name in ((finetuned[0], 'finetune_0.01'),
                      (finetuned[1], 'finetune_0.1'),
                      (float(distilled[1]), 'distill_0.1')):
    result = json.loads((work_dir / name / 'result.json').read_text())
    assert result['global_step'] == 4
    assert value == pytest.approx(
        100 * result['eval/label_top_1_accuracy'], abs=0.051)
  # The student is the smaller network.
  student = json.loads((work_dir / 'distill_0.1' / 'flags.json').read_text())
  assert student['resnet_depth'] == 10 and student['train_mode'] == 'distill'


RECIPE_CHECKS = {
    'distillation_self_training': lambda text, tiny_model, work_dir: (
        check_distillation_self_training(text, tiny_model)),
    'semi_supervised_recipe': lambda text, tiny_model, work_dir: (
        check_semi_supervised_recipe(text, work_dir)),
}


@pytest.mark.parametrize('run', sorted(RECIPE_RUNS))
def test_recipe_notebook_runs_and_saves_figures(run, tiny_model, kernel_env,
                                                tmp_path, monkeypatch):
  # test_colabs._execute reads its run from test_colabs.RUNS.
  monkeypatch.setitem(test_colabs.RUNS, run, RECIPE_RUNS[run])
  notebook, figure_dir = test_colabs._execute(  # pylint: disable=protected-access
      run, tiny_model, kernel_env, tmp_path)
  pngs = sorted(figure_dir.glob('*.png'))
  assert pngs, f'{run} saved no figure in {figure_dir}'
  for png in pngs:
    width, height = notebook_tools.png_size(png)
    assert width > 300 and height > 200, (png.name, width, height)
    assert png.stat().st_size > 10_000, png.name  # Not an empty canvas.
  text = test_colabs._text_outputs(notebook)  # pylint: disable=protected-access
  RECIPE_CHECKS[run](text, tiny_model, tmp_path / 'work')
