"""Embeddings of any images by any SimCLR checkpoint, written to a file.

What people who do not train want from a trained network: one output
(`final_avg_pool`, the encoder's features that linear evaluation reads;
`proj_head_input`, the same tensor under the SavedModel's other name;
`proj_head_output`, the contrastive embedding; `logits_sup`) for every image
of a TFDS split or of a folder, with its label and, for a folder, its file.

The checkpoint may be of any format `checkpoint_restore` reads (this
project's, Google's TF1 or TF2 checkpoints, SavedModels); its architecture is
read from its variables. Images get the evaluation preprocessing of
training (`data_util.preprocess_image`, no augmentation) and the model runs
in inference mode, so the values are those of the exported SavedModel's
`serving_default` for the same images.

Folders are read file by file here rather than through their prepared TFDS
dataset, because TFDS stores examples in hashed order and without their
paths; each file is decoded exactly as the image-folder dataset stores it
(`image_folder.encode_for_storage`), and files that are no decodable image
are skipped and counted, as there.

Output: `.npz` (numpy: `embeddings` (N, D) float32, `labels` (N,) int64, -1
for unlabeled images, `paths` (N,) str for folders, and `class_names`,
`output_name`, `checkpoint`, `dataset`, `split`) or `.csv` (pandas:
`pandas.read_csv`; columns `path` for folders, `label`, `e0` ... `e{D-1}`).
The file is written whole or not at all, and an existing one is never
replaced. Optionally also a TensorBoard projector log and a t-SNE map
(`embedding_views.py`).
"""

import dataclasses
import io
import time

import numpy as np
import tensorflow as tf

from tf2.checkpoints import architecture
from tf2.checkpoints import files as checkpoint_files
from tf2.checkpoints import restore as checkpoint_restore
from tf2.data import data_util
from tf2.data import pipeline
from tf2.data.datasets import folder_layout
from tf2.data.datasets import image_folder
from tf2.evaluation import embedding_views
from tf2.models import model as model_lib
from tf2.runtime import fileio
from tf2.runtime import model_dir as model_dir_lib
from tf2.training import distillation

OUTPUT_NAMES = ('final_avg_pool', 'proj_head_input', 'proj_head_output',
                'logits_sup')
FORMATS = ('.npz', '.csv')


class EmbeddingError(ValueError):
  """Bad input; the message names the problem and the fix in one line."""


def check_request(output_name, output):
  """Fails fast, before anything is loaded or written."""
  if output_name not in OUTPUT_NAMES:
    raise EmbeddingError(
        f'--output_name={output_name!r} is not an output the embedding '
        f'command writes: pass one of {", ".join(OUTPUT_NAMES)}.')
  if not str(output).lower().endswith(FORMATS):
    raise EmbeddingError(
        f'--output={output}: pass a file name ending in .npz (numpy) or '
        '.csv (pandas.read_csv).')
  if fileio.exists(str(output)):
    raise EmbeddingError(
        f'--output={output} exists; nothing is overwritten: pass a new file '
        'name or remove this one.')


def model_config(checkpoint, image_size=None):
  """(ModelConfig, architecture dict) of a checkpoint, from names and shapes.

  Args:
    checkpoint: prefix, model_dir, SavedModel or TF1 `model.ckpt-N`.
    image_size: the model's input size; None: the size the run that wrote
      the checkpoint trained at, else 32 for a CIFAR stem and 224 otherwise.

  Raises:
    checkpoint_files.CheckpointError: unreadable or not a SimCLR model.
  """
  arch = architecture.infer_architecture(checkpoint)
  recorded = model_dir_lib.settings_near(checkpoint)[0] or {}
  if image_size is None:
    image_size = recorded.get('image_size') or (
        32 if arch['cifar_stem'] else 224)
  # Which projection layer feeds the supervised head (for logits_sup).
  selector, _ = distillation.teacher_ft_proj_selector(checkpoint)
  return architecture.model_config_for(
      arch, image_size=int(image_size), ft_proj_selector=selector,
      cifar_stem=arch['cifar_stem']), arch


def check_output_exists(output_name, arch, checkpoint):
  """The checkpoint has the part that computes `output_name`."""
  part = {'logits_sup': 'has_supervised_head',
          'proj_head_output': 'has_projection_head'}.get(output_name)
  if part and not arch[part]:
    head = 'supervised' if output_name == 'logits_sup' else 'projection'
    raise EmbeddingError(
        f'--output_name={output_name}: {checkpoint} has no {head} head; '
        'pass another output (final_avg_pool, the encoder\'s features) or a '
        'checkpoint with that head.')


def load_model(checkpoint, config):
  """The checkpoint's model in inference mode, of any checkpoint format.

  Returns:
    (Model, RestoreReport).
  """
  model = model_lib.build_model(config)
  report = checkpoint_restore.restore_model_weights(model, checkpoint,
                                                    strict=False)
  model.trainable = False
  return model, report


@dataclasses.dataclass
class Images:
  """Batches of preprocessed images to embed.

  Attributes:
    batches: tf.data.Dataset of (images (B, S, S, 3), labels (B,) int64 (-1
      unlabeled), paths (B,) string ('' for TFDS examples)).
    total: images (TFDS) or listed files (folder) there are, for progress.
    class_names: label i is class_names[i].
    is_folder: whether paths are filled.
  """
  batches: object
  total: int
  class_names: tuple
  is_folder: bool


def _preprocess(image, image_size):
  return data_util.preprocess_image(image, image_size, image_size,
                                    is_training=False,
                                    test_crop=image_size > 32)


def folder_images(root, split, image_size, batch_size):
  """Images of one split of a folder (image_folder.py's layouts)."""
  layout = folder_layout.read_layout(root)
  if split not in layout.files:
    raise EmbeddingError(
        f'--split={split!r}: the folder {layout.root} has the splits '
        f'{sorted(layout.files)}; pass one of them.')
  entries = layout.files[split]

  def decodable():
    for relpath, label in entries:
      path = fileio.join(layout.root, relpath)
      try:
        with fileio.gfile.GFile(path, 'rb') as f:
          stored = image_folder.encode_for_storage(f.read())
      except (OSError, tf.errors.OpError):
        continue  # Not an image: skipped, as when the folder is prepared.
      yield stored, label, path

  signature = (tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64),
               tf.TensorSpec([], tf.string))
  batches = tf.data.Dataset.from_generator(
      decodable, output_signature=signature).map(
          lambda data, label, path: (_preprocess(tf.io.decode_image(
              data, channels=3, expand_animations=False), image_size), label,
                                     path),
          num_parallel_calls=tf.data.AUTOTUNE)
  return Images(batches.batch(batch_size).prefetch(2), len(entries),
                layout.classes, True)


def tfds_images(dataset, split, image_size, batch_size, data_dir=None):
  """Images of a split of a prepared TFDS dataset, in the split's order."""
  builder = pipeline.get_builder(dataset, data_dir)
  total = pipeline.num_examples(builder, split)
  input_fn = pipeline.build_input_fn(
      builder, batch_size, False, split=split, image_size=image_size,
      train_mode='finetune')

  def unpack(images, targets):
    labels = tf.where(targets['labeled'] > 0,
                      tf.argmax(targets['labels'], axis=1), -1)
    return images, labels, tf.fill(tf.shape(labels), '')

  names = tuple(builder.info.features['label'].names)
  return Images(input_fn(tf.distribute.InputContext()).map(unpack), total,
                names, False)


def images_of(dataset, split, image_size, batch_size, data_dir=None):
  """A folder's or a TFDS dataset's images (see pipeline.get_builder)."""
  if image_folder.is_image_folder(dataset):
    return folder_images(dataset, split, image_size, batch_size)
  return tfds_images(dataset, split, image_size, batch_size, data_dir)


class ProgressLine:
  """Reports images done, speed and time left every `interval_s` seconds."""

  def __init__(self, total, report, interval_s=10.0, clock=time.monotonic):
    self._total, self._report, self._interval = total, report, interval_s
    self._clock = clock
    self._start = self._last = clock()

  def update(self, done, final=False):
    now = self._clock()
    if not final and now - self._last < self._interval:
      return
    self._last = now
    rate = done / max(now - self._start, 1e-9)
    left = max(self._total - done, 0) / rate if rate else 0.0
    self._report(f'{done:,}/{self._total:,} images '
                 f'({100.0 * done / max(self._total, 1):.0f}%), '
                 f'{rate:.0f} images/s' +
                 ('' if final else f', about {left:.0f} s left'))


def compute(model, output_name, images, report=None, interval_s=10.0,
            thumbnail_size=None):
  """{'embeddings', 'labels', 'paths'} numpy arrays, one row per image.

  With `thumbnail_size`, also 'thumbnails': (N, s, s, 3) uint8 images.
  """
  if output_name == 'logits_sup' and model.supervised_head is None:
    raise EmbeddingError(
        '--output_name=logits_sup: this checkpoint has no supervised head; '
        'pass a fine-tuned checkpoint or another output, e.g. '
        'final_avg_pool.')

  @tf.function
  def forward(batch):
    outputs = model.endpoints(batch, training=False)[output_name]
    return tf.reshape(outputs, [tf.shape(outputs)[0], -1])

  progress = ProgressLine(images.total, report or (lambda line: None),
                          interval_s)
  rows, labels, paths, thumbnails = [], [], [], []
  for batch, batch_labels, batch_paths in images.batches:
    rows.append(forward(batch).numpy())
    if thumbnail_size:
      thumbnails.append(tf.cast(tf.round(255 * tf.image.resize(
          batch, [thumbnail_size] * 2, 'area')), tf.uint8).numpy())
    labels.append(batch_labels.numpy())
    paths.extend(p.decode('utf-8') for p in batch_paths.numpy())
    progress.update(sum(len(r) for r in rows))
  if not rows:
    raise EmbeddingError('The split has no decodable image: nothing to '
                         'embed; pass a split or folder with images.')
  progress.update(sum(len(r) for r in rows), final=True)
  result = {'embeddings': np.concatenate(rows).astype(np.float32),
            'labels': np.concatenate(labels).astype(np.int64),
            'paths': np.asarray(paths, dtype=str)}
  if thumbnail_size:
    result['thumbnails'] = np.concatenate(thumbnails)
  return result


def encode(result, metadata, output):
  """The bytes of the output file; the format follows the extension."""
  if str(output).lower().endswith('.csv'):
    embeddings = result['embeddings']
    header = ['label'] + [f'e{i}' for i in range(embeddings.shape[1])]
    if metadata['is_folder']:
      header.insert(0, 'path')
    lines = [','.join(header)]
    for i, row in enumerate(embeddings):
      cells = [str(result['labels'][i])] + [repr(float(v)) for v in row]
      if metadata['is_folder']:
        # Quoted as in RFC 4180, so commas in file names survive.
        cells.insert(0, '"' + result['paths'][i].replace('"', '""') + '"')
      lines.append(','.join(cells))
    return ('\n'.join(lines) + '\n').encode('utf-8')
  arrays = {k: v for k, v in result.items() if k != 'thumbnails'}
  if not metadata['is_folder']:
    del arrays['paths']
  arrays.update({k: np.asarray(v, dtype=str) for k, v in metadata.items()
                 if k != 'is_folder'})
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()


def embed(checkpoint, dataset, split, output, output_name='final_avg_pool',
          data_dir=None, image_size=None, batch_size=256, report=None,
          projector_dir=None, tsne_png=None):
  """Writes the embeddings of a split; see the module docstring.

  Args:
    checkpoint: any checkpoint format (see `model_config`).
    dataset: TFDS name or image folder path.
    split: e.g. 'train', 'test', 'train[:10%]' (TFDS) or a folder's split.
    output: new `.npz` or `.csv` file (any filesystem).
    output_name: one of OUTPUT_NAMES.
    data_dir: TFDS data directory.
    image_size: see `model_config`.
    batch_size: images per forward pass.
    report: called with a progress line every 10 s and at the end.
    projector_dir: also a TensorBoard projector log here (embedding_views).
    tsne_png: also a t-SNE map coloured by label, as this PNG.

  Returns:
    {'output', 'rows', 'dim', 'restore'} for the caller's summary.

  Raises:
    EmbeddingError, checkpoint_files.CheckpointError,
    pipeline.DatasetNotPreparedError, image_folder.ImageFolderError: bad
      input, before anything is written.
  """
  check_request(output_name, output)
  try:
    if projector_dir:
      embedding_views.check_new_dir(str(projector_dir), '--projector_dir')
    if tsne_png:
      embedding_views.check_new_png(str(tsne_png), '--tsne_png')
  except ValueError as e:
    raise EmbeddingError(str(e)) from None
  if batch_size < 1:
    raise EmbeddingError(f'--batch_size={batch_size}: pass 1 or more.')
  config, arch = model_config(checkpoint, image_size)
  check_output_exists(output_name, arch, checkpoint)
  # The images are checked before the model is built: bad input fails fast.
  images = images_of(dataset, split, config.image_size, batch_size, data_dir)
  model, restored = load_model(checkpoint, config)
  thumbnails = (embedding_views.thumbnail_size(images.total)
                if projector_dir else None)
  result = compute(model, output_name, images, report,
                   thumbnail_size=thumbnails)
  metadata = dict(class_names=images.class_names, output_name=output_name,
                  checkpoint=str(checkpoint), dataset=str(dataset),
                  split=split, is_folder=images.is_folder)
  try:
    fileio.write_bytes_new(str(output), encode(result, metadata, output))
  except tf.errors.AlreadyExistsError:
    raise EmbeddingError(f'--output={output} appeared while embedding; it '
                         'was kept: pass a new file name.') from None
  if projector_dir:
    embedding_views.write_projector(
        str(projector_dir), result['embeddings'], result['labels'],
        images.class_names, result['paths'] if images.is_folder else [],
        result['thumbnails'])
  if tsne_png:
    embedding_views.write_tsne_png(
        str(tsne_png), result['embeddings'], result['labels'],
        images.class_names, f'{output_name} of {dataset} {split}')
  return {'output': str(output), 'rows': len(result['labels']),
          'dim': result['embeddings'].shape[1],
          'restore': restored.summary()}


# The errors `embed` raises for bad input.
INPUT_ERRORS = (EmbeddingError, checkpoint_files.CheckpointError,
                pipeline.DatasetNotPreparedError, image_folder.ImageFolderError)
