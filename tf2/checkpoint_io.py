"""The public entry points for reading SimCLR checkpoints, in one place.

Reading a checkpoint is split by job:

- checkpoint_files.py: the formats, path resolution, opening TensorFlow's
  reader, `CheckpointError`.
- object_graph.py / tf1_mapping.py: how the model's variables are keyed in
  TF2 checkpoints and named in TF1 ones.
- architecture.py: the architecture from names and shapes, its description
  and the ModelConfig that rebuilds it.
- checkpoint_restore.py: the strict restore and its report.

New code imports those modules; this one keeps older imports working.
"""

from tf2.architecture import describe_architecture
from tf2.architecture import infer_architecture
from tf2.architecture import model_config_for
from tf2.checkpoint_files import CheckpointError
from tf2.checkpoint_files import detect_format
from tf2.checkpoint_files import FORMATS
from tf2.checkpoint_restore import restore_model_weights
from tf2.checkpoint_restore import RestoreReport
from tf2.checkpoint_restore import verify_matches_model

__all__ = ('CheckpointError', 'FORMATS', 'RestoreReport',
           'describe_architecture', 'detect_format', 'infer_architecture',
           'model_config_for', 'restore_model_weights', 'verify_matches_model')
