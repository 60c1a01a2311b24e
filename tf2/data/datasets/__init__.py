"""TFDS datasets of this project; importing registers them with TFDS."""

from tf2.data.datasets import digits  # pylint: disable=unused-import
