"""How a user's folder of images is laid out: splits, classes, files.

`read_layout(root)` lists a folder (any filesystem, through tf.io.gfile)
into a `FolderLayout`: its splits, classes, the files of each split and a
fingerprint of them, without reading an image. `image_folder.py` prepares
it as a TFDS dataset. Two layouts are accepted:

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
start with '.' are ignored, as are files directly in root.

Classes are the class folder names of `train`, sorted; label i is the i-th
name. Another labeled split may lack classes but not add any (a class with
no training images is most likely a misnamed folder). Without `train` the
classes are those of all labeled splits together; with only `unlabeled`,
there is one placeholder class, 'unlabeled'.
"""

import dataclasses
import hashlib
import os
import re

import tensorflow as tf

from tf2.runtime import fileio

# Bump when the prepared data changes for the same files: the version is
# part of the prepared path and of the fingerprint, so old preparations are
# not read.
VERSION = '1.0.0'
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp', '.webp')
UNLABELED_SPLIT = 'unlabeled'
TRAIN_SPLIT = 'train'
_PLACEHOLDER_CLASS = 'unlabeled'
# Split names end up in TFDS split specs ('train[:10%]'); 'all' is TFDS's.
_SPLIT_NAME = re.compile(r'^[A-Za-z0-9_]+$')
MAX_LISTED_SKIPPED = 20
EXPECTED_LAYOUT = (
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
        f'subfolders. {EXPECTED_LAYOUT}')
  return by_class, stray


def _fingerprint(root, relpaths):
  digest = hashlib.sha256(VERSION.encode())
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
                           f'folder. {EXPECTED_LAYOUT}')
  top = _subdirs(root)
  if not top:
    raise ImageFolderError(f'Image folder {root} has no subfolders. '
                           f'{EXPECTED_LAYOUT}')
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
              f'{EXPECTED_LAYOUT}')
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
