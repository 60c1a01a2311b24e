"""A user's own folder of images as a prepared TFDS dataset.

Pass `--dataset=<folder>` to pretrain, fine-tune, distil or evaluate on
your own images with no code. Two layouts are accepted:

Split layout: every subfolder of root is a split.
  root/train/<class>/**/<image>     a labeled split: one subfolder per class
  root/test/<class>/**/<image>      more labeled splits, any name (validation,
                                    test, ...): letters, digits and '_'
  root/unlabeled/**/<image>         optional: images with no label, any depth

Simple layout: every subfolder of root is a class, all in split 'train'.
  root/<class>/**/<image>

The layout is the split layout when root has a subfolder named `train` or
`unlabeled`; otherwise it is simple when some subfolder of root directly
holds an image file (extension .jpg, .jpeg, .png, .gif, .bmp or .webp, any
case), and the split layout when none does. Files and folders whose names
start with '.' are ignored, as are files directly in root. Inside a class
folder (or `unlabeled`) files at any depth count, and every file, whatever
its extension, is decoded once while preparing: those that are not
decodable images (text, empty or truncated files) are skipped and counted,
as are files of a labeled split that are not inside a class folder.

Classes are the class folder names of `train`, sorted; label i is the i-th
name. Another labeled split may lack classes but not add any (a class with
no training images is most likely a misnamed folder). Without `train` the
classes are those of all labeled splits together; with only `unlabeled`,
there is one placeholder class, 'unlabeled'.

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

import dataclasses
import hashlib
import os
import re

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tf2.runtime import fileio

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp', '.webp')
UNLABELED_SPLIT = 'unlabeled'
TRAIN_SPLIT = 'train'
_PLACEHOLDER_CLASS = 'unlabeled'
# Bump when the prepared data changes for the same files: the version is
# part of the prepared path, so old preparations are not read.
_VERSION = '1.0.0'
# Split names end up in TFDS split specs ('train[:10%]'); 'all' is TFDS's.
_SPLIT_NAME = re.compile(r'^[A-Za-z0-9_]+$')
_MAX_LISTED_SKIPPED = 20
_EXPECTED_LAYOUT = (
    'Expected either root/<split>/<class>/<images> (split folders such as '
    'train and test, each with one subfolder per class, plus optionally '
    'root/unlabeled/<images>) or root/<class>/<images> (all in split '
    "'train'); images are .jpg, .jpeg, .png, .gif, .bmp or .webp files.")


class ImageFolderError(ValueError):
  """The folder is missing, empty or not in an accepted layout."""


def _visible(names):
  return sorted(n for n in names if not n.startswith('.'))


def _listdir(path):
  """Visible entry names (object stores mark folders with a trailing '/')."""
  return _visible(n.rstrip('/') for n in fileio.listdir(path))


def _subdirs(path):
  return [n for n in _listdir(path) if fileio.isdir(fileio.join(path, n))]


def _is_image_name(name):
  return name.lower().endswith(IMAGE_EXTENSIONS)


def _has_image_file(path):
  return any(_is_image_name(n) and fileio.isfile(fileio.join(path, n))
             for n in _listdir(path))


def _identity(path):
  """What a folder is: locally its real path (links resolved), else itself."""
  return os.path.realpath(path) if fileio.is_local(path) else path


def _files_under(root, folder):
  """Relative paths (to root) of the visible files under folder, sorted."""
  found, seen = [], set()
  for dirpath, dirnames, filenames in fileio.gfile.walk(
      fileio.join(root, folder)):
    # Local linked folders are followed, each once: a link to an ancestor
    # must not make the walk endless.
    dirpath = dirpath.rstrip('/')
    seen.add(_identity(dirpath))
    dirnames[:] = [d for d in _visible(n.rstrip('/') for n in dirnames)
                   if _identity(fileio.join(dirpath, d)) not in seen]
    found.extend(fileio.join(dirpath, n)[len(root) + 1:]
                 for n in _visible(filenames))
  return sorted(found)


@dataclasses.dataclass(frozen=True)
class FolderLayout:
  """What a folder holds, read from its file names only (nothing decoded).

  Attributes:
    root: absolute path of the folder.
    simple: True for root/<class>/..., False for root/<split>/<class>/....
    classes: class names; label i is classes[i].
    files: {split: ((relative path, label or -1 if unlabeled), ...)}.
    stray: {split: relative paths of files outside any class folder}.
    fingerprint: hex digest of every listed file's path, size and mtime.
  """
  root: str
  simple: bool
  classes: tuple
  files: dict
  stray: dict
  fingerprint: str

  @property
  def config_name(self):
    slug = re.sub(r'[^a-z0-9]+', '_', fileio.basename(self.root).lower())
    return f'{slug.strip("_")[:40] or "root"}_{self.fingerprint[:16]}'


def _labeled_split(root, split, prefix):
  """({class: relpaths}, stray relpaths) of one labeled split folder."""
  folder = fileio.join(root, prefix) if prefix else root
  by_class = {c: _files_under(root, fileio.join(prefix, c) if prefix else c)
              for c in _subdirs(folder)}
  stray = [fileio.join(prefix, n) for n in _listdir(folder)
           if fileio.isfile(fileio.join(folder, n))] if prefix else []
  if not any(_is_image_name(p) for paths in by_class.values() for p in paths):
    raise ImageFolderError(
        f'Split {split!r} ({folder}) has no image files in class '
        f'subfolders. {_EXPECTED_LAYOUT}')
  return by_class, stray


def _fingerprint(root, relpaths):
  digest = hashlib.sha256(_VERSION.encode())
  for relpath in sorted(relpaths):
    try:
      stat = fileio.gfile.stat(fileio.join(root, relpath))
      size, mtime = stat.length, stat.mtime_nsec
    except tf.errors.OpError:  # A broken link: skipped later; its name counts.
      size, mtime = -1, -1
    digest.update(f'{relpath}\0{size}\0{mtime}\n'.encode())
  return digest.hexdigest()


def read_layout(root):
  """Lists a folder's splits, classes and files (see the module docstring).

  Args:
    root: path of the folder.

  Returns:
    A FolderLayout.

  Raises:
    ImageFolderError: root is missing, has no subfolders, a split has no
      image file or a bad name, or a labeled split has a class that `train`
      lacks.
  """
  root = fileio.abspath(root).rstrip('/')
  if not fileio.isdir(root):
    raise ImageFolderError(f'Image folder {root} does not exist or is not a '
                           f'folder. {_EXPECTED_LAYOUT}')
  top = _subdirs(root)
  if not top:
    raise ImageFolderError(f'Image folder {root} has no subfolders. '
                           f'{_EXPECTED_LAYOUT}')
  # A stray image directly in train/ must not turn its split into a class.
  simple = (not {TRAIN_SPLIT, UNLABELED_SPLIT} & set(top) and
            any(_has_image_file(fileio.join(root, d)) for d in top))
  labeled, stray, unlabeled = {}, {}, None
  if simple:
    labeled[TRAIN_SPLIT], stray[TRAIN_SPLIT] = _labeled_split(
        root, TRAIN_SPLIT, '')
  else:
    for split in top:
      if not _SPLIT_NAME.match(split) or split == 'all':
        raise ImageFolderError(
            f'Split folder {fileio.join(root, split)}: a split name must be '
            "letters, digits and '_' and not 'all'; rename the folder.")
      if split == UNLABELED_SPLIT:
        unlabeled = _files_under(root, split)
        if not any(_is_image_name(p) for p in unlabeled):
          raise ImageFolderError(
              f'Split folder {fileio.join(root, split)} has no image files. '
              f'{_EXPECTED_LAYOUT}')
      else:
        labeled[split], stray[split] = _labeled_split(root, split, split)

  if TRAIN_SPLIT in labeled:
    classes = tuple(sorted(labeled[TRAIN_SPLIT]))
    for split, by_class in labeled.items():
      extra = sorted(set(by_class) - set(classes))
      if extra:
        raise ImageFolderError(
            f'Split {split!r} of {root} has class folders {extra} that split '
            f"'train' lacks; every labeled split must use the classes of "
            f"'train' ({list(classes)}): rename or remove those folders.")
  elif labeled:
    classes = tuple(sorted(set().union(*labeled.values())))
  else:
    classes = (_PLACEHOLDER_CLASS,)
  files = {split: tuple((p, classes.index(c))
                        for c, paths in by_class.items() for p in paths)
           for split, by_class in labeled.items()}
  if unlabeled is not None:
    files[UNLABELED_SPLIT] = tuple((p, -1) for p in unlabeled)
    stray[UNLABELED_SPLIT] = []
  every_file = [p for entries in files.values() for p, _ in entries]
  every_file += [p for paths in stray.values() for p in paths]
  return FolderLayout(root=root, simple=simple, classes=classes, files=files,
                      stray=stray, fingerprint=_fingerprint(root, every_file))


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
  """A FolderLayout as a TFDS dataset; see the module docstring."""

  name = 'image_folder'
  VERSION = tfds.core.Version(_VERSION)
  RELEASE_NOTES = {_VERSION: 'Initial release.'}

  def __init__(self, *, layout, data_dir=None):
    """Args: layout, a FolderLayout; data_dir, None for the TFDS default."""
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
        'skipped_files': skipped[:_MAX_LISTED_SKIPPED]}
    logging.info('Image folder %s, split %r: %d images used, %d files '
                 'skipped.', root, split, used, len(skipped))
    if skipped:
      logging.warning(
          'Skipped (unreadable, not a decodable image, or outside a class '
          'folder): %s%s', ', '.join(skipped[:_MAX_LISTED_SKIPPED]),
          ' ...' if len(skipped) > _MAX_LISTED_SKIPPED else '')
    if not used:
      raise ImageFolderError(
          f'Split {split!r} of {root} has no decodable images (skipped '
          f'{len(skipped)} files: {skipped[:5]}). {_EXPECTED_LAYOUT}')


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
    ImageFolderError: the folder is missing, empty, in no accepted layout,
      or a split has no decodable image.
  """
  builder = ImageFolderBuilder(layout=read_layout(root), data_dir=data_dir)
  builder.download_and_prepare()  # A no-op when already prepared.
  return builder


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
