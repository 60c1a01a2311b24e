r"""Writes the embeddings of a dataset's or a folder's images to a file.

  python checkpoints_tools/embed.py --checkpoint=<any checkpoint> \
    --dataset=<TFDS name or image folder> --split=test --output=test.npz

One row per image: the chosen output of the network in inference mode
(--output_name: final_avg_pool, the encoder's features; proj_head_input;
proj_head_output; logits_sup), its label (-1 if unlabeled) and, for a
folder, its file. `.npz` files load with numpy
(`np.load(f)['embeddings']`, `['labels']`, `['paths']`), `.csv` files
with `pandas.read_csv`. --projector_dir adds a TensorBoard projector log,
--tsne_png a t-SNE map. The checkpoint may be of any format (this project's,
Google's TF1 or TF2 checkpoints, SavedModels); the architecture is read from
it. See tf2/evaluation/embeddings.py.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from checkpoints_tools import cli

from tf2.evaluation import embeddings

FLAGS = flags.FLAGS


def main(argv):
  cli.refuse_positional_arguments('embed.py', argv)
  try:
    summary = embeddings.embed(
        FLAGS.checkpoint, FLAGS.dataset, FLAGS.split, FLAGS.output,
        output_name=FLAGS.output_name, data_dir=FLAGS.data_dir,
        image_size=FLAGS.image_size, batch_size=FLAGS.batch_size,
        projector_dir=FLAGS.projector_dir, tsne_png=FLAGS.tsne_png,
        report=lambda line: print(f'embed.py: {line}', file=sys.stderr,
                                  flush=True))
  except embeddings.INPUT_ERRORS as e:
    cli.fail('embed.py', e)
  print(summary['restore'])
  print(f'Wrote {summary["rows"]} rows of {summary["dim"]} values '
        f'({FLAGS.output_name}) to {summary["output"]}')


def define_flags():
  cli.define_checkpoint_flag()
  flags.DEFINE_string('dataset', None, 'A prepared TFDS dataset (e.g. '
                      'cifar10, digits) or the path of an image folder.')
  flags.DEFINE_string('split', 'test', "The split to embed ('train', "
                      "'test', 'train[:10%]', or a folder's split).")
  flags.DEFINE_string('output', None, 'New .npz or .csv file; an existing '
                      'file is never replaced.')
  flags.DEFINE_string('output_name', 'final_avg_pool',
                      f'Which output: {", ".join(embeddings.OUTPUT_NAMES)}.')
  flags.DEFINE_string('data_dir', None, 'TFDS data directory.')
  flags.DEFINE_integer('image_size', None, 'Input size; default: the size '
                       'the checkpoint was trained at if its run recorded '
                       'it, else 32 for a CIFAR stem and 224 otherwise.')
  flags.DEFINE_integer('batch_size', 256, 'Images per forward pass.')
  flags.DEFINE_string('projector_dir', None, 'Also write a TensorBoard '
                      'projector log (embeddings, labels, a sprite of the '
                      'images) to this new directory: tensorboard '
                      '--logdir=DIR, tab Projector.')
  flags.DEFINE_string('tsne_png', None, 'Also write a 2-D t-SNE map of the '
                      'embeddings, coloured by label, to this new .png.')
  flags.mark_flags_as_required(['checkpoint', 'dataset', 'output'])


if __name__ == '__main__':
  define_flags()
  app.run(main)
