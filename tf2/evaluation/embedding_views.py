"""Embeddings to look at: a TensorBoard projector log and a t-SNE map.

People look at embeddings rather than read them. `write_projector` writes a
log directory for TensorBoard's projector (`tensorboard --logdir=DIR`, tab
"Projector"): the embeddings as a checkpointed variable, one metadata row
per image (label, class name and, for folders, path) and a sprite of the
images, so each point shows its image. `write_tsne_png` writes a 2-D t-SNE
map (scikit-learn) coloured by label, with matplotlib (imported only here).

Both write whole or not at all and never replace what exists.
"""

import io

import numpy as np
from sklearn import manifold
from tensorboard.plugins import projector
import tensorflow as tf

from tf2.runtime import fileio

# TensorBoard shows sprites of at most 8192 x 8192 pixels.
_MAX_SPRITE_SIDE = 8192
_VARIABLE = 'embedding'


def check_new_dir(directory, flag):
  if fileio.exists(directory) and (not fileio.isdir(directory) or
                                   fileio.listdir(directory)):
    raise ValueError(f'{flag}={directory} exists and is not empty; nothing '
                     'is overwritten: pass a new directory.')


def check_new_png(path, flag):
  if not str(path).lower().endswith('.png'):
    raise ValueError(f'{flag}={path}: pass a file name ending in .png.')
  if fileio.exists(str(path)):
    raise ValueError(f'{flag}={path} exists; nothing is overwritten: pass a '
                     'new file name.')


def sprite(thumbnails):
  """The thumbnails (N, s, s, 3) uint8 tiled row by row in a square grid."""
  count, size = len(thumbnails), thumbnails.shape[1]
  side = int(np.ceil(np.sqrt(count)))
  grid = np.zeros([side * side, size, size, 3], np.uint8)
  grid[:count] = thumbnails
  grid = grid.reshape(side, side, size, size, 3).transpose(0, 2, 1, 3, 4)
  return grid.reshape(side * size, side * size, 3)


def thumbnail_size(count, wanted=32):
  """The largest thumbnail side <= wanted whose sprite TensorBoard shows."""
  side = int(np.ceil(np.sqrt(max(count, 1))))
  return max(1, min(wanted, _MAX_SPRITE_SIDE // side))


def _metadata(labels, class_names, paths):
  header = ['label', 'class'] + (['path'] if len(paths) else [])
  lines = ['\t'.join(header)]
  for i, label in enumerate(labels):
    name = class_names[label] if 0 <= label < len(class_names) else 'none'
    cells = [str(label), str(name)] + ([paths[i]] if len(paths) else [])
    # Tabs and newlines would break the TSV's rows and columns.
    lines.append('\t'.join(c.replace('\t', ' ').replace('\n', ' ')
                           for c in cells))
  return '\n'.join(lines) + '\n'


def write_projector(directory, embeddings, labels, class_names, paths,
                    thumbnails):
  """Writes a TensorBoard projector log directory; see the module docstring.

  Args:
    directory: new (or empty) directory, any filesystem.
    embeddings: (N, D) float32.
    labels: (N,) int, -1 for unlabeled.
    class_names: label i is class_names[i].
    paths: (N,) file paths, or empty for TFDS examples.
    thumbnails: (N, s, s, 3) uint8 images for the sprite.

  Returns:
    directory.
  """

  def write(tmp_dir):
    fileio.makedirs(tmp_dir)
    checkpoint = tf.train.Checkpoint(**{_VARIABLE: tf.Variable(embeddings)})
    checkpoint.save(fileio.join(tmp_dir, 'embedding.ckpt'))
    with fileio.gfile.GFile(fileio.join(tmp_dir, 'metadata.tsv'), 'w') as f:
      f.write(_metadata(labels, class_names, paths))
    with fileio.gfile.GFile(fileio.join(tmp_dir, 'sprite.png'), 'wb') as f:
      f.write(tf.io.encode_png(sprite(thumbnails)).numpy())
    config = projector.ProjectorConfig()
    view = config.embeddings.add()
    view.tensor_name = f'{_VARIABLE}/.ATTRIBUTES/VARIABLE_VALUE'
    view.metadata_path = 'metadata.tsv'
    view.sprite.image_path = 'sprite.png'
    view.sprite.single_image_dim.extend(list(thumbnails.shape[1:3]))
    projector.visualize_embeddings(tmp_dir, config)

  return fileio.replace_dir_atomic(write, directory,
                                   commit_file='projector_config.pbtxt')


def tsne(embeddings, seed=0):
  """(N, 2) t-SNE coordinates (scikit-learn; PCA initialisation)."""
  count = len(embeddings)
  return manifold.TSNE(
      n_components=2, perplexity=float(min(30, max(count - 1, 1))),
      init='pca', random_state=seed).fit_transform(
          np.asarray(embeddings, np.float64))


def write_tsne_png(path, embeddings, labels, class_names, title=''):
  """A t-SNE map of the embeddings, one colour per label, as a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  points = tsne(embeddings)
  figure, axes = pyplot.subplots(figsize=(7, 7), dpi=100)
  colours = pyplot.get_cmap('tab20' if len(class_names) > 10 else 'tab10')
  for label in np.unique(labels):
    chosen = labels == label
    name = class_names[label] if 0 <= label < len(class_names) else 'none'
    axes.scatter(points[chosen, 0], points[chosen, 1], s=8,
                 color=colours(int(label) % colours.N), label=str(name))
  if len(np.unique(labels)) <= 20:
    axes.legend(markerscale=2, fontsize=8, loc='best')
  axes.set_title(title, fontsize=9)
  axes.set_xticks([])
  axes.set_yticks([])
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', bbox_inches='tight')
  pyplot.close(figure)
  return fileio.write_bytes_new(str(path), buffer.getvalue())
