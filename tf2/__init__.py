"""SimCLRv2 in TensorFlow 2 with the Keras 2 API (tf-keras).

Keras 3 does not track layers kept in Python lists as checkpoint
dependencies, so its checkpoints cannot match the object graph of the
published SimCLR weights. We therefore ask TensorFlow for the legacy Keras
before it is first imported, and every module of this package imports
`tf_keras` directly so it gets Keras 2 even if TensorFlow was imported first.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
