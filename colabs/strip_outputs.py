"""Removes outputs and execution counts from notebooks, in place.

Committed notebooks carry no outputs (tests/test_colabs.py checks it): diffs
stay readable and nothing from one machine's run is published.

  python colabs/strip_outputs.py             # every colabs/*.ipynb
  python colabs/strip_outputs.py a.ipynb ... # the given notebooks
"""

import pathlib
import sys

import nbformat


def strip(notebook):
  """Clears outputs and execution counts of every code cell, in place."""
  for cell in notebook.cells:
    if cell.cell_type == 'code':
      cell.outputs = []
      cell.execution_count = None
  return notebook


def main(paths):
  if not paths:
    paths = sorted(pathlib.Path(__file__).parent.glob('*.ipynb'))
  for path in paths:
    notebook = nbformat.read(path, as_version=4)
    nbformat.write(strip(notebook), path)
    print(f'stripped {path}')


if __name__ == '__main__':
  main(sys.argv[1:])
