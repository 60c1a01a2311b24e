r"""Label efficiency of the SimCLRv2 recipe on the embedded digits.

For each label fraction (1%, 10%, 100% of the 1,442 training digits, class
balanced), measures top-1 accuracy on the 355 test digits of:

  supervised     the same network trained from scratch on the labels only;
  simclr_ft      SimCLRv2 pretraining on all training images (no labels),
                 then fine-tuning from the first projection layer
                 (--ft_proj_selector=1) on the labels;
  self_distill   the fine-tuned model as teacher, a student of the same
                 architecture trained from scratch on the teacher's soft
                 labels of all training images (the labeled and the rest);
  small_distill  the same with a smaller student (ResNet-10 by default).

Every run is a `python run.py ...` command (printed), so the benchmark is
also the recipe. It writes, in --out_dir: `results.json`, `results.md` (a
markdown table) and `label_efficiency.png` (top-1 against label fraction).
Finished runs (a result.json in their model_dir) are reused, so an
interrupted benchmark continues where it stopped.

The defaults finish in well under an hour on a 2-core CPU. On a GPU, scale
up with e.g. --image_size=32 --pretrain_epochs=800 --finetune_steps=2000
--distill_epochs=200.

  python benchmarks/label_efficiency.py --out_dir=/tmp/label_efficiency
"""

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string('out_dir', '/tmp/label_efficiency', 'Where runs, table '
                    'and plot are written.')
flags.DEFINE_list('fractions', ['0.01', '0.1', '1.0'], 'Label fractions.')
flags.DEFINE_integer('image_size', 8, 'Input size; the digits are 8x8 scans, '
                     'so 8 px loses nothing (and is 4x cheaper than 16).')
flags.DEFINE_integer('resnet_depth', 18, 'Teacher / baseline depth.')
flags.DEFINE_integer('student_depth', 10, 'Depth of the smaller student.')
flags.DEFINE_integer('pretrain_epochs', 60, 'Pretraining epochs.')
flags.DEFINE_integer('pretrain_batch_size', 128, 'Pretraining batch size.')
flags.DEFINE_integer('finetune_steps', 300, 'Steps of each supervised and '
                     'fine-tuning run (the same for every fraction).')
flags.DEFINE_integer('distill_epochs', 15, 'Distillation epochs over the '
                     'training images.')
flags.DEFINE_integer('batch_size', 64, 'Fine-tuning / distillation batch.')
flags.DEFINE_float('scratch_learning_rate', 0.4, 'Base learning rate (per '
                   '256 examples) of networks trained from scratch: the '
                   'supervised baseline and the distillation students.')
flags.DEFINE_float('finetune_learning_rate', 0.1, 'Base learning rate of '
                   'fine-tuning the pretrained network.')
flags.DEFINE_integer('seed', 0, 'Seed of the labeled subsets.')
flags.DEFINE_string('data_dir', None, 'TFDS data_dir (default: in out_dir).')
FLAGS = flags.FLAGS

METHODS = ('supervised', 'simclr_ft', 'self_distill', 'small_distill')
LABELS = {
    'supervised': 'supervised only (from scratch)',
    'simclr_ft': 'SimCLRv2 pretrain + fine-tune',
    'self_distill': '+ self-distillation',
    'small_distill': '+ distillation into ResNet-{student_depth}',
}


def _common():
  return ['--dataset=digits', '--use_tpu=False', '--cache_dataset',
          f'--image_size={FLAGS.image_size}', '--eval_split=test',
          '--eval_batch_size=512', '--proj_out_dim=64',
          f'--data_dir={FLAGS.data_dir}', '--keep_checkpoint_max=1']


def _label_flags(fraction):
  if fraction >= 1.0:
    return []
  return [f'--label_fraction={fraction}', f'--label_seed={FLAGS.seed}']


def _supervised_flags(learning_rate):
  """Fine-tuning, baseline and distillation: momentum, cosine decay.

  Training from scratch (baseline, students) uses a larger learning rate
  than fine-tuning a pretrained network, as usual.
  """
  return ['--optimizer=momentum', f'--learning_rate={learning_rate}',
          '--weight_decay=1e-4', '--warmup_epochs=0',
          f'--train_batch_size={FLAGS.batch_size}']


def run(name, args):
  """Runs run.py once (skipped if finished); returns its result.json."""
  model_dir = os.path.join(FLAGS.out_dir, name)
  result_path = os.path.join(model_dir, 'result.json')
  if not os.path.exists(result_path):
    command = [sys.executable, os.path.join(ROOT, 'run.py'),
               f'--model_dir={model_dir}', *_common(), *args]
    print('$', ' '.join(command[1:]), flush=True)
    start = time.time()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    with open(os.path.join(FLAGS.out_dir, f'{name}.log'), 'w') as log:
      subprocess.run(command, check=True, stdout=log, stderr=log, env=env,
                     cwd=ROOT)
    print(f'  {name}: {time.time() - start:.0f} s', flush=True)
  with open(result_path) as f:
    return json.load(f)


def pretrain():
  # mode=train_then_eval only for the export; no supervised head is trained
  # (lineareval would see all labels), so there is nothing to evaluate.
  run('pretrain', [
      '--mode=train_then_eval', '--train_mode=pretrain',
      f'--resnet_depth={FLAGS.resnet_depth}',
      f'--train_batch_size={FLAGS.pretrain_batch_size}',
      f'--train_epochs={FLAGS.pretrain_epochs}', '--learning_rate=1.0',
      '--weight_decay=1e-4', '--temperature=0.2', '--use_blur=False',
      '--color_jitter_strength=0.5', '--warmup_epochs=5',
      '--lineareval_while_pretraining=False', '--checkpoint_epochs=20'])
  return os.path.join(FLAGS.out_dir, 'pretrain')


def top1(result):
  return result['eval/label_top_1_accuracy']


def measure_fraction(fraction, pretrained):
  """Top-1 of every method at one label fraction."""
  tag = f'{fraction:g}'
  steps = [f'--train_steps={FLAGS.finetune_steps}',
           f'--checkpoint_steps={FLAGS.finetune_steps}']
  finetune = ['--mode=train_then_eval', '--train_mode=finetune',
              *_label_flags(fraction), *steps]
  results = {}
  results['supervised'] = top1(run(f'supervised_{tag}', [
      *finetune, *_supervised_flags(FLAGS.scratch_learning_rate),
      f'--resnet_depth={FLAGS.resnet_depth}']))
  results['simclr_ft'] = top1(run(f'simclr_ft_{tag}', [
      *finetune, *_supervised_flags(FLAGS.finetune_learning_rate),
      f'--checkpoint={pretrained}', '--ft_proj_selector=1']))
  teacher = os.path.join(FLAGS.out_dir, f'simclr_ft_{tag}')
  distill = ['--mode=train_then_eval', '--train_mode=distill',
             *_supervised_flags(FLAGS.scratch_learning_rate),
             *_label_flags(fraction),
             f'--teacher_checkpoint={teacher}',
             f'--train_epochs={FLAGS.distill_epochs}',
             f'--checkpoint_epochs={FLAGS.distill_epochs}']
  results['self_distill'] = top1(run(f'self_distill_{tag}', [
      *distill, f'--resnet_depth={FLAGS.resnet_depth}']))
  results['small_distill'] = top1(run(f'small_distill_{tag}', [
      *distill, f'--resnet_depth={FLAGS.student_depth}']))
  return results


def _label_count(fraction):
  path = os.path.join(FLAGS.out_dir, f'simclr_ft_{fraction:g}', 'flags.json')
  with open(path) as f:
    return json.load(f)['num_labeled_examples']


def write_table(results, counts, wall_s, path):
  fractions = sorted(results)
  header = ['method'] + [f'{f:.0%} ({counts[f]} labels)' for f in fractions]
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '---|' + '--:|' * len(fractions)]
  for method in METHODS:
    label = LABELS[method].format(student_depth=FLAGS.student_depth)
    cells = [f'{100 * results[f][method]:.1f}' for f in fractions]
    lines.append('| ' + ' | '.join([label] + cells) + ' |')
  lines.append('')
  lines.append(f'Top-1 (%) on the 355 test digits; ResNet-{FLAGS.resnet_depth} '
               f'at {FLAGS.image_size} px; wall time {wall_s / 60:.0f} min.')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return '\n'.join(lines)


def write_plot(results, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fractions = sorted(results)
  fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
  for method in METHODS:
    label = LABELS[method].format(student_depth=FLAGS.student_depth)
    ax.plot([100 * f for f in fractions],
            [100 * results[f][method] for f in fractions], marker='o',
            label=label)
  ax.set_xscale('log')
  ax.set_xticks([100 * f for f in fractions])
  ax.set_xticklabels([f'{100 * f:g}%' for f in fractions])
  ax.set_xlabel('labeled fraction of the training digits')
  ax.set_ylabel('top-1 accuracy on test (%)')
  ax.set_title('Label efficiency on digits')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def main(argv):
  del argv
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  FLAGS.data_dir = FLAGS.data_dir or os.path.join(FLAGS.out_dir, 'data')
  start = time.time()
  pretrained = pretrain()
  fractions = [float(f) for f in FLAGS.fractions]
  results = {f: measure_fraction(f, pretrained) for f in fractions}
  wall_s = time.time() - start
  counts = {f: _label_count(f) for f in fractions}
  table = write_table(results, counts, wall_s,
                      os.path.join(FLAGS.out_dir, 'results.md'))
  write_plot(results, os.path.join(FLAGS.out_dir, 'label_efficiency.png'))
  with open(os.path.join(FLAGS.out_dir, 'results.json'), 'w') as f:
    json.dump({'results': {str(k): v for k, v in results.items()},
               'labels': {str(k): v for k, v in counts.items()},
               'wall_s': wall_s,
               'flags': {k: getattr(FLAGS, k) for k in (
                   'image_size', 'resnet_depth', 'student_depth',
                   'pretrain_epochs', 'pretrain_batch_size', 'finetune_steps',
                   'distill_epochs', 'batch_size', 'scratch_learning_rate',
                   'finetune_learning_rate', 'seed')}}, f, indent=1)
  print(table)


if __name__ == '__main__':
  app.run(main)
