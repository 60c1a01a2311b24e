"""A user's own folder of images as a prepared TFDS dataset.

Pass `--dataset=<folder>` to pretrain, fine-tune, distil or evaluate on
your own images with no code. The accepted layouts (split folders with a
subfolder per class, or a folder per class) and how classes are named are
described in `folder_layout.py`, which lists the folder. Every file of a
class folder (or `unlabeled`), whatever its extension, is decoded once while
preparing: those that are not decodable images (text, empty or truncated
files) are skipped and counted, as are files of a labeled split that are
not inside a class folder.

Features: `image` (H, W, 3) uint8, stored as the file's own bytes when it
is a JPEG decoding to 3 channels or an 8-bit RGB PNG, else as the decoded
image re-encoded as RGB PNG (grey replicated on 3 channels, alpha dropped,
palette expanded, 16 bits scaled to 8, first frame of an animation);
`label`, the class (0 for unlabeled images); `is_labeled`, False for the
`unlabeled` split.

The data is prepared into `<data_dir>/image_folder/<config>/<version>`,
`config` being the folder's name and a fingerprint of its files' relative
paths, sizes and modification times: an edited folder gets a new config and
is prepared again, an unchanged one is read as is. TFDS prepares into a
temporary folder and renames it when complete, so a half-prepared dataset
is never read. Configs of older contents stay on disk until deleted.
"""

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tf2.data.datasets import folder_layout
from tf2.runtime import fileio


# Raised for a folder that cannot be prepared (folder_layout.py).
ImageFolderError = folder_layout.ImageFolderError


def encode_for_storage(contents):
  """The bytes to store for one file, decoding it once.

  Args:
    contents: the file's bytes.

  Returns:
    The file's own bytes if it is a JPEG decoding to 3 channels or an 8-bit
    RGB PNG, else the decoded image as RGB PNG bytes.

  Raises:
    tf.errors.InvalidArgumentError: not a decodable image.
  """
  image = tf.io.decode_image(contents, expand_animations=False)  # uint8.
  channels = image.shape[-1]
  is_jpeg = contents[:3] == b'\xff\xd8\xff'
  # PNG IHDR: bit depth at byte 24, colour type at byte 25 (2 = RGB).
  is_rgb8_png = (contents[:8] == b'\x89PNG\r\n\x1a\n' and
                 contents[24:26] == b'\x08\x02')
  if channels == 3 and (is_jpeg or is_rgb8_png):
    return contents
  if channels in (2, 4):
    image = image[..., :channels - 1]  # Drops alpha, as RGB decoders do.
  if image.shape[-1] == 1:
    image = tf.image.grayscale_to_rgb(image)
  return tf.io.encode_png(image).numpy()


class ImageFolderBuilder(tfds.core.GeneratorBasedBuilder,
                         skip_registration=True):
  """A folder_layout.FolderLayout as a TFDS dataset; see the module docstring."""

  name = 'image_folder'
  VERSION = tfds.core.Version(folder_layout.VERSION)
  RELEASE_NOTES = {folder_layout.VERSION: 'Initial release.'}

  def __init__(self, *, layout, data_dir=None):
    """Args: layout, a folder_layout.FolderLayout; data_dir, None for the TFDS default."""
    self._layout = layout
    config = tfds.core.BuilderConfig(
        name=layout.config_name, description=f'Images of {layout.root}.')
    super().__init__(data_dir=data_dir, config=config)
    # TFDS pickles a builder as the arguments of its __init__.
    self._original_state = dict(layout=layout, data_dir=data_dir)

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=f'Images of {self._layout.root}.\n\n{__doc__}',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3)),
            'label': tfds.features.ClassLabel(names=self._layout.classes),
            'is_labeled': tfds.features.Scalar(dtype=np.bool_),
        }),
        supervised_keys=('image', 'label'),
        # Filled while preparing, saved and read back with the dataset.
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the files are local.
    self.info.metadata.update(root=self._layout.root,
                              simple_layout=self._layout.simple, splits={})
    return {split: self._generate_examples(split)
            for split in self._layout.files}

  def _generate_examples(self, split):
    root = self._layout.root
    skipped = list(self._layout.stray[split])
    used = 0
    for relpath, label in self._layout.files[split]:
      try:
        with fileio.gfile.GFile(fileio.join(root, relpath), 'rb') as f:
          image = encode_for_storage(f.read())
      except (OSError, tf.errors.OpError):  # Unreadable or not an image.
        skipped.append(relpath)
        continue
      used += 1
      yield relpath, {'image': image, 'label': max(label, 0),
                      'is_labeled': label >= 0}
    self.info.metadata['splits'][split] = {
        'images': used, 'skipped': len(skipped),
        'skipped_files': skipped[:folder_layout.MAX_LISTED_SKIPPED]}
    logging.info('Image folder %s, split %r: %d images used, %d files '
                 'skipped.', root, split, used, len(skipped))
    if skipped:
      logging.warning(
          'Skipped (unreadable, not a decodable image, or outside a class '
          'folder): %s%s', ', '.join(skipped[:folder_layout.MAX_LISTED_SKIPPED]),
          ' ...' if len(skipped) > folder_layout.MAX_LISTED_SKIPPED else '')
    if not used:
      raise folder_layout.ImageFolderError(
          f'Split {split!r} of {root} has no decodable images (skipped '
          f'{len(skipped)} files: {skipped[:5]}). {folder_layout.EXPECTED_LAYOUT}')


def is_image_folder(dataset_arg):
  """Whether a --dataset value names an image folder rather than TFDS data.

  A bare name that is both a folder in the working directory and a TFDS
  dataset ('cifar10') means the TFDS dataset; write './cifar10' for the
  folder.

  Args:
    dataset_arg: the --dataset value.

  Returns:
    True if it is an existing folder (and not a bare TFDS dataset name).
  """
  if not fileio.isdir(fileio.abspath(dataset_arg)):
    return False
  looks_like_path = ('/' in dataset_arg or dataset_arg.startswith(('.', '~')))
  return looks_like_path or dataset_arg not in tfds.list_builders(
      with_community_datasets=False)


def image_folder_builder(root, data_dir=None):
  """A prepared TFDS builder of a folder's images; prepares it if needed.

  Args:
    root: the folder (see the module docstring for the layouts).
    data_dir: TFDS data directory; None for the TFDS default
      ($TFDS_DATA_DIR or ~/tensorflow_datasets).

  Returns:
    A prepared `tfds.core.DatasetBuilder` with features image, label and
    is_labeled; `preparation_counts(builder)` gives the images used and
    files skipped per split.

  Raises:
    folder_layout.ImageFolderError: the folder is missing, empty, in no accepted layout,
      or a split has no decodable image.
  """
  builder = ImageFolderBuilder(layout=folder_layout.read_layout(root), data_dir=data_dir)
  if not builder.is_prepared():  # A prepared one is only read.
    builder.download_and_prepare()
  return builder


def is_prepared(root, data_dir=None):
  """Whether the folder's images are already prepared in data_dir.

  False also for a folder that cannot be read as images (its error is
  raised where the builder is made).
  """
  try:
    layout = folder_layout.read_layout(root)
  except folder_layout.ImageFolderError:
    return False
  return ImageFolderBuilder(layout=layout, data_dir=data_dir).is_prepared()


def preparation_counts(builder):
  """{split: {'images': used, 'skipped': count, 'skipped_files': [...]}}.

  'skipped_files' lists at most the first 20 skipped relative paths.
  """
  return dict(builder.info.metadata['splits'])


def describe(builder):
  """One line per split (images used, files skipped) for logs."""
  root = builder.info.metadata['root']
  return '\n'.join(
      f'{root} {split}: {c["images"]} images, {c["skipped"]} files skipped'
      for split, c in sorted(preparation_counts(builder).items()))
