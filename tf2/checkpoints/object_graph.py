"""How the model's variables are keyed in TF2 checkpoints and SavedModels.

`tf.train.Checkpoint(model=model)` stores each variable under its
object-graph path: the attribute names from the checkpoint's root down to the
variable, escaped and joined by '/', then `/.ATTRIBUTES/VARIABLE_VALUE`, for
example `model/resnet_model/block_groups/0/layers/0/projection_layers/0/
conv2d/kernel/.ATTRIBUTES/VARIABLE_VALUE`. The attribute names come from
model.py and resnet.py, which is why those must not change.

A SavedModel's `variables/` may store the same tensors under other keys
(`trainable_variables_list/3`); its saved object graph still reaches each one
by the same path from the `model` root, so paths are followed through the
graph, never guessed from tensor keys.
"""

import collections

import tensorflow as tf

from tf2.models import model as model_lib

OBJECT_GRAPH_KEY = '_CHECKPOINTABLE_OBJECT_GRAPH'
VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'
MODEL_ROOT = 'model'
# Children that SavedModels add to every Keras layer beside its attributes;
# paths through them are aliases, not the object-graph path of a variable.
_SAVED_MODEL_ALIASES = frozenset({
    'keras_api', 'variables', 'trainable_variables',
    'non_trainable_variables', 'regularization_losses', 'metrics',
    'layer_regularization_losses', 'layer_metrics'})


def _escape(name):
  return name.replace('.', '..').replace('/', '.S')


def _breadth_first(root, root_id, children):
  """Yields (path, node) for every node below `root`, each once.

  A node reachable by several paths gets the first one in breadth-first
  order, as TensorFlow's checkpoint writer does.

  Args:
    root: the start node.
    root_id: its identity (nodes are compared by identity).
    children: node -> iterable of (attribute name, child node, child id).
  """
  queue = collections.deque([(root, '')])
  seen = {root_id}
  while queue:
    node, path = queue.popleft()
    for name, child, child_id in children(node):
      if child_id in seen:
        continue
      seen.add(child_id)
      child_path = f'{path}/{_escape(name)}' if path else _escape(name)
      yield child_path, child
      queue.append((child, child_path))


def _trackable_children(node):
  if isinstance(node, tf.Variable):
    return []
  return [(name, child, id(child)) for name, child in
          tf.train.TrackableView.children(node).items()]


def checkpoint_keys(model):
  """{key: variable} that `tf.train.Checkpoint(model=model)` would write.

  Nothing is written; the keys are computed from the model's attributes.
  """
  root = tf.train.Checkpoint(model=model)
  return {path + VALUE_SUFFIX: node
          for path, node in _breadth_first(root, id(root), _trackable_children)
          if isinstance(node, tf.Variable)}


def keyed_in_creation_order(model):
  """[(checkpoint key, variable)] in the order the model created them.

  Args:
    model: a Model from `model.build_model(config, build=True)`, which
      records that order.
  """
  keys = checkpoint_keys(model)
  key_of = {variable.ref(): key for key, variable in keys.items()}
  return [(key_of[v.ref()], v)
          for v in model_lib.variables_in_creation_order(model)]


def root_objects(graph):
  """{name: node id} of the objects at the root of a TrackableObjectGraph."""
  return {c.local_name: c.node_id for c in graph.nodes[0].children}


def saved_variable_keys(graph, model_node):
  """{model key: tensor key} of every variable below the `model` object.

  Args:
    graph: the TrackableObjectGraph stored in a checkpoint.
    model_node: the node id of its `model` object (see root_objects).

  Returns:
    Keys as `checkpoint_keys` writes them, mapped to the keys under which
    the checkpoint holds their tensors.
  """
  def children(skip):
    def of(node_id):
      return [(c.local_name, c.node_id, c.node_id)
              for c in graph.nodes[node_id].children
              if c.local_name not in skip]
    return of

  values, found = {}, set()
  # Canonical paths first; aliases only for variables reachable no other way.
  for skip in (_SAVED_MODEL_ALIASES, frozenset()):
    for path, node_id in _breadth_first(model_node, model_node,
                                         children(skip)):
      attributes = {a.name: a.checkpoint_key
                    for a in graph.nodes[node_id].attributes}
      tensor_key = attributes.get('VARIABLE_VALUE')
      if tensor_key is not None and tensor_key not in found:
        found.add(tensor_key)
        values[f'{MODEL_ROOT}/{path}{VALUE_SUFFIX}'] = tensor_key
  return values


def key_parts(key):
  """The attribute names of an object-graph key, without the value suffix."""
  if not key.endswith(VALUE_SUFFIX):
    raise ValueError(f'{key} is no object-graph key of a variable.')
  return key[:-len(VALUE_SUFFIX)].split('/')
