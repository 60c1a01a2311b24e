"""Runs the notebooks of colabs/ headless: parameters, kernel, execution.

papermill-style parameter injection without papermill: a cell tagged
"parameters" holds the defaults, and a cell inserted after it (tagged
"injected-parameters") overrides them.
"""

import json
import os
import struct
import sys

import nbclient
import nbformat

PARAMETERS_TAG = 'parameters'
KERNEL_NAME = 'simclr-colabs-test'


def parameters_cell_index(notebook):
  """Index of the one cell tagged "parameters".

  Raises:
    ValueError: no such cell, or more than one.
  """
  indices = [i for i, cell in enumerate(notebook.cells)
             if PARAMETERS_TAG in cell.get('metadata', {}).get('tags', [])]
  if len(indices) != 1:
    raise ValueError(f'{len(indices)} cells are tagged "{PARAMETERS_TAG}"; '
                     'a notebook needs exactly one.')
  return indices[0]


def inject_parameters(notebook, parameters):
  """Inserts a cell assigning `parameters` after the parameters cell.

  Args:
    notebook: an nbformat NotebookNode, changed in place.
    parameters: {name: value}; values are written with repr(), so they must
      be literals (str, int, float, bool, None, lists of these).

  Returns:
    The notebook.

  Raises:
    ValueError: a name the parameters cell does not assign (a misspelt
      override would otherwise silently change nothing).
  """
  index = parameters_cell_index(notebook)
  defaults = notebook.cells[index].source
  unknown = [name for name in parameters
             if not any(line.startswith(f'{name} =')
                        for line in defaults.splitlines())]
  if unknown:
    raise ValueError(f'The parameters cell does not define {unknown}.')
  source = '\n'.join(f'{name} = {value!r}'
                     for name, value in parameters.items())
  cell = nbformat.v4.new_code_cell(source)
  cell.metadata['tags'] = ['injected-parameters']
  notebook.cells.insert(index + 1, cell)
  return notebook


def write_kernel_spec(directory):
  """Writes a kernel spec running this interpreter; returns JUPYTER_PATH entry.

  A kernel named "python3" may resolve to another interpreter (a user-wide
  kernel spec); this one always runs `sys.executable`, so the notebooks see
  the packages the tests see.
  """
  kernel_dir = os.path.join(directory, 'kernels', KERNEL_NAME)
  os.makedirs(kernel_dir, exist_ok=True)
  spec = {'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f',
                   '{connection_file}'],
          'display_name': 'SimCLR colabs test', 'language': 'python'}
  with open(os.path.join(kernel_dir, 'kernel.json'), 'w') as f:
    json.dump(spec, f)
  return directory


def execute(notebook, cwd, timeout):
  """Executes every cell in order; raises on the first cell error.

  Args:
    notebook: NotebookNode, filled with outputs in place.
    cwd: the kernel's working directory.
    timeout: seconds allowed per cell.

  Returns:
    The executed notebook.

  Raises:
    nbclient.exceptions.CellExecutionError: a cell raised; the message holds
      the cell source and the traceback.
  """
  client = nbclient.NotebookClient(
      notebook, timeout=timeout, kernel_name=KERNEL_NAME,
      resources={'metadata': {'path': os.fspath(cwd)}})
  client.execute()
  return notebook


def outputs_and_counts(notebook):
  """Indices of code cells that carry outputs or an execution count."""
  return [i for i, cell in enumerate(notebook.cells)
          if cell.cell_type == 'code' and (cell.get('outputs') or
                                           cell.get('execution_count'))]


def png_size(path):
  """(width, height) in pixels from a PNG file's IHDR header.

  Raises:
    ValueError: the file is no PNG.
  """
  with open(path, 'rb') as f:
    header = f.read(24)
  if header[:8] != b'\x89PNG\r\n\x1a\n' or header[12:16] != b'IHDR':
    raise ValueError(f'{path} is not a PNG file.')
  return struct.unpack('>II', header[16:24])
