r"""Label efficiency of the SimCLRv2 recipe on the embedded digits.

For each label fraction (1%, 10%, 100% of the 1,442 training digits, class
balanced), measures top-1 accuracy on the 355 test digits of:

  supervised     the same network trained from scratch on the labels only
                 (preset digits_supervised);
  simclr_ft      SimCLRv2 pretraining on all training images, no labels
                 (digits_pretrain), then fine-tuning from the first
                 projection layer on the labels (digits_finetune);
  self_distill   the fine-tuned model as teacher, a student of the same
                 architecture trained from scratch on the teacher's soft
                 labels of all training images, labeled and not
                 (digits_distill);
  small_distill  the same with a smaller student (digits_distill
                 --resnet_depth=10 by default).

Every run is a `python run.py --config=<preset>` command (printed), with
flags only for what differs between runs (label fraction, seed, teacher)
and for the lengths and image size given here, so the benchmark is also
the recipe: the presets in tf2/presets.py hold every other setting, and
each run's model_dir holds what it ran with (experiment.json, flags.json).
It writes, in --out_dir: `results.json`, `results.md` (a markdown table)
and `label_efficiency.png` (top-1 against label fraction), and a log
`<run>.log` beside each run. Finished runs (a result.json in their
model_dir) are reused, so an interrupted benchmark continues where it
stopped; runs with another --seed get their own model_dirs and share the
pretraining.

The defaults finish in well under an hour on a 2-core CPU. On a GPU, scale
up with e.g. --image_size=32 --pretrain_epochs=800 --finetune_steps=2000
--distill_epochs=200.

  python benchmarks/label_efficiency.py --out_dir=/tmp/label_efficiency
"""

import os
import sys
import time

from absl import app
from absl import flags

# Run as a script: the project root (for colabs.tools and tf2) is one up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from colabs import tools  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf2.runtime import fileio  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string('out_dir', '/tmp/label_efficiency', 'Where runs, table '
                    'and plot are written (may be gs://).')
flags.DEFINE_list('fractions', ['0.01', '0.1', '1.0'], 'Label fractions.')
flags.DEFINE_integer('seed', 0, 'Seed of the labeled subsets.')
flags.DEFINE_integer('student_depth', 10, 'Depth of the smaller student.')
flags.DEFINE_integer('image_size', None, "Input size of every run (default: "
                     "the presets' 8 px; the digits are 8x8 scans).")
flags.DEFINE_integer('pretrain_epochs', None, 'Pretraining epochs (default: '
                     "digits_pretrain's).")
flags.DEFINE_integer('finetune_steps', None, 'Steps of each supervised and '
                     "fine-tuning run (default: the presets').")
flags.DEFINE_integer('distill_epochs', None, 'Distillation epochs over the '
                     "training images (default: digits_distill's).")
flags.DEFINE_string('data_dir', None, 'TFDS data_dir (default: in out_dir).')
FLAGS = flags.FLAGS

METHODS = ('supervised', 'simclr_ft', 'self_distill', 'small_distill')
LABELS = {
    'supervised': 'supervised only (from scratch)',
    'simclr_ft': 'SimCLRv2 pretrain + fine-tune',
    'self_distill': '+ self-distillation',
    'small_distill': '+ distillation into ResNet-{student_depth}',
}


def model_dir(name):
  return fileio.join(FLAGS.out_dir, name)


def run(name, preset, **overrides):
  """Runs one preset into out_dir/name (reused if finished); its result."""
  return tools.run_py(preset, model_dir(name), skip_finished=True,
                      data_dir=FLAGS.data_dir, image_size=FLAGS.image_size,
                      **overrides)


def pretrain():
  """Pretrains (no label is seen); returns the model_dir."""
  run('pretrain', 'digits_pretrain', train_epochs=FLAGS.pretrain_epochs)
  return model_dir('pretrain')


def run_tag(fraction):
  """'0.1' for seed 0 (the names of earlier runs), '0.1_seed1' otherwise."""
  return f'{fraction:g}' + (f'_seed{FLAGS.seed}' if FLAGS.seed else '')


def measure_fraction(fraction, pretrained):
  """Top-1 of every method at one label fraction; the teacher runs first."""
  tag = run_tag(fraction)
  labels = dict(label_fraction=fraction, label_seed=FLAGS.seed)
  supervised = dict(labels, train_steps=FLAGS.finetune_steps)
  distill = dict(labels, teacher_checkpoint=model_dir(f'simclr_ft_{tag}'),
                 train_epochs=FLAGS.distill_epochs)
  results = {}
  results['supervised'] = tools.top1(run(
      f'supervised_{tag}', 'digits_supervised', **supervised))
  results['simclr_ft'] = tools.top1(run(
      f'simclr_ft_{tag}', 'digits_finetune', checkpoint=pretrained,
      **supervised))
  results['self_distill'] = tools.top1(run(
      f'self_distill_{tag}', 'digits_distill', **distill))
  results['small_distill'] = tools.top1(run(
      f'small_distill_{tag}', 'digits_distill',
      resnet_depth=FLAGS.student_depth, **distill))
  return results


def write_table(results, counts, wall_s, path):
  """Writes the markdown table of top-1 by method and fraction; returns it."""
  fractions = sorted(results)
  pretrained = tools.read_flags(model_dir('pretrain'))
  header = ['method'] + [f'{f:.0%} ({counts[f]} labels)' for f in fractions]
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '---|' + '--:|' * len(fractions)]
  for method in METHODS:
    label = LABELS[method].format(student_depth=FLAGS.student_depth)
    cells = [f'{100 * results[f][method]:.1f}' for f in fractions]
    lines.append('| ' + ' | '.join([label] + cells) + ' |')
  lines.append('')
  lines.append(f'Top-1 (%) on the 355 test digits; '
               f'ResNet-{pretrained["resnet_depth"]} at '
               f'{pretrained["image_size"]} px; wall time '
               f'{wall_s / 60:.0f} min.')
  table = '\n'.join(lines)
  fileio.write_text_atomic(path, table + '\n')
  return table


def plot(results):
  """The figure of top-1 against label fraction, one line per method."""
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
  return fig


def main(argv):
  del argv
  FLAGS.data_dir = FLAGS.data_dir or fileio.join(FLAGS.out_dir, 'data')
  start = time.time()
  pretrained = pretrain()
  fractions = [float(f) for f in FLAGS.fractions]
  results = {f: measure_fraction(f, pretrained) for f in fractions}
  wall_s = time.time() - start
  counts = {f: tools.num_labeled_examples(model_dir(f'simclr_ft_{run_tag(f)}'))
            for f in fractions}
  table = write_table(results, counts, wall_s,
                      fileio.join(FLAGS.out_dir, 'results.md'))
  fig = plot(results)
  tools.save_figure(fig, FLAGS.out_dir, 'label_efficiency', dpi=120)
  fileio.write_json_atomic(fileio.join(FLAGS.out_dir, 'results.json'), {
      'results': {str(k): v for k, v in results.items()},
      'labels': {str(k): v for k, v in counts.items()},
      'wall_s': wall_s,
      'flags': {k: getattr(FLAGS, k) for k in (
          'image_size', 'student_depth', 'pretrain_epochs', 'finetune_steps',
          'distill_epochs', 'seed')}})
  print(table)


if __name__ == '__main__':
  app.run(main)
