"""TF1 frozen graphs and checkpoints of TF-slim networks, read into Keras models.

The pretrained networks this project reuses (Deep3D's R-Net, FaceNet) were
released as TF1 frozen GraphDefs (variables turned into `Const` nodes of the
same name) or checkpoints. Keras layers here are named after the slim scopes
with "/" written as "." (`InceptionResnetV1.Repeat.block35_1.Branch_0.Conv2d_1x1`),
so each weight's slim name is its layer name plus `/weights`, `/biases` or
`/BatchNorm/<statistic>`.
"""

import os

import numpy as np
import tensorflow as tf


class GraphFormatError(ValueError):
  """A graph or checkpoint that cannot be read or lacks expected tensors; one line naming it."""


def slim_weight_names(model):
  """{slim variable name: Keras variable} for every Conv2D, Dense and BatchNormalization weight.

  Batch norm without `scale` (slim's default) has no gamma; the others follow
  slim's names (beta, moving_mean, moving_variance).
  """
  names = {}
  for layer in model.layers:
    scope = layer.name.replace(".", "/")
    if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense)):
      names[scope + "/weights"] = layer.kernel
      if layer.use_bias:
        names[scope + "/biases"] = layer.bias
    elif isinstance(layer, tf.keras.layers.BatchNormalization):
      stats = (("gamma",) if layer.scale else ()) + (("beta",) if layer.center else ())
      for stat in stats + ("moving_mean", "moving_variance"):
        names[f"{scope}/{stat}"] = getattr(layer, stat)  # scope ends in /BatchNorm
  return names


def read_graph_def(path):
  """A frozen GraphDef from `path`; GraphFormatError for a missing or corrupt file."""
  if not os.path.isfile(path):
    raise GraphFormatError(f"{path}: no such file (see checkpoints/README.md)")
  with open(path, "rb") as f:
    data = f.read()
  graph_def = tf.compat.v1.GraphDef()
  try:
    graph_def.ParseFromString(data)
  except Exception as e:  # protobuf's DecodeError and friends
    raise GraphFormatError(f"{path}: not a TensorFlow GraphDef, or truncated "
                           f"({type(e).__name__})") from None
  if not graph_def.node:
    raise GraphFormatError(f"{path}: empty or truncated GraphDef (no nodes)")
  for node in graph_def.node:
    if node.op == "Const":
      _check_constant(node, path)
  return graph_def


MAX_BROADCAST_ELEMENTS = 1 << 24  # a constant stored as one value repeated (64 MiB of float32)


def _check_constant(node, path):
  """GraphFormatError unless a Const's declared shape fits what it stores: its bytes exactly,
  or a few values TensorFlow repeats over a shape of at most MAX_BROADCAST_ELEMENTS (a
  100-byte file declaring [7, 7, 3, 6.4e9] would otherwise allocate terabytes)."""
  tensor = node.attr["value"].tensor
  dims = [d.size for d in tensor.tensor_shape.dim]
  if any(d < 0 for d in dims):
    raise GraphFormatError(f"{path}: constant '{node.name}' has a negative dimension {dims}")
  elements = int(np.prod(dims, dtype=object)) if dims else 1
  try:
    itemsize = tf.dtypes.as_dtype(tensor.dtype).size
  except TypeError:
    raise GraphFormatError(f"{path}: constant '{node.name}' has an unknown dtype "
                           f"{tensor.dtype}") from None
  if tensor.tensor_content:
    if len(tensor.tensor_content) != elements * itemsize:
      raise GraphFormatError(f"{path}: constant '{node.name}' declares shape {dims} "
                             f"({elements * itemsize} bytes) but stores "
                             f"{len(tensor.tensor_content)} bytes")
  elif elements > MAX_BROADCAST_ELEMENTS and tensor.dtype != tf.string.as_datatype_enum:
    raise GraphFormatError(f"{path}: constant '{node.name}' declares shape {dims} "
                           f"({elements} elements) from a few stored values; refusing to "
                           "allocate it")


def graph_constants(graph_def):
  """{node name: value getter} for the graph's `Const` nodes."""
  consts = {node.name: node for node in graph_def.node if node.op == "Const"}
  return {name: (lambda node=node: tf.make_ndarray(node.attr["value"].tensor))
          for name, node in consts.items()}


def checkpoint_values(prefix):
  """{variable name: value getter} of a TF checkpoint (`model.ckpt-N` prefix or its folder)."""
  if os.path.isdir(prefix):
    found = tf.train.latest_checkpoint(prefix)
    indexes = sorted(f[:-len(".index")] for f in os.listdir(prefix) if f.endswith(".index"))
    if found is None and len(indexes) == 1:
      found = os.path.join(prefix, indexes[0])
    if found is None:
      raise GraphFormatError(f"{prefix}: no checkpoint (*.index + *.data-*) in this folder")
    prefix = found
  if not os.path.isfile(prefix + ".index"):
    raise GraphFormatError(f"{prefix}: no such checkpoint ({prefix}.index is missing)")
  try:
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
  except (tf.errors.OpError, ValueError) as e:
    raise GraphFormatError(f"{prefix}: unreadable checkpoint "
                           f"({str(e).strip().splitlines()[0]})") from None

  def getter(name):
    try:
      return reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError) as e:  # IndexError: short data file
      raise GraphFormatError(f"{prefix}: cannot read '{name}' (truncated or corrupt data file: "
                             f"{str(e).strip().splitlines()[0]})") from None

  return {name: (lambda name=name: getter(name)) for name in shapes}


def find_prefix(names, anchor, path, what):
  """The import scope ('' or 'scope/') in front of `anchor` among `names`."""
  hits = [name[:-len(anchor)] for name in names if name.endswith(anchor)]
  if len(hits) != 1:
    raise GraphFormatError(f"{path}: no unique tensor '*{anchor}'; not {what}")
  return hits[0]


def assign_slim_weights(model, values, path, anchor, what):
  """Copies slim weights into `model` (all or nothing).

  Args:
    model: a Keras model whose layer names are slim scopes ("." for "/").
    values: {name: value getter} from `graph_constants` or `checkpoint_values`.
    path: the file, for messages.
    anchor: a weight name that must occur exactly once, locating the import prefix.
    what: the network's name, for the message when the anchor is missing.

  Raises:
    GraphFormatError: a weight is missing, has the wrong shape or is not finite
      (names it).
  """
  prefix = find_prefix(values, anchor, path, what)
  assignments = []
  for name, variable in slim_weight_names(model).items():
    getter = values.get(prefix + name)
    if getter is None:
      raise GraphFormatError(f"{path}: tensor '{prefix + name}' not found")
    value = getter()
    if tuple(value.shape) != tuple(variable.shape):
      raise GraphFormatError(f"{path}: tensor '{prefix + name}' has shape {list(value.shape)}, "
                             f"expected {list(variable.shape)}")
    if not np.all(np.isfinite(value)):
      raise GraphFormatError(f"{path}: tensor '{prefix + name}' contains NaN or infinity")
    assignments.append((variable, value))
  for variable, value in assignments:
    variable.assign(value.astype(np.float32))
  return model


def resolve_tensor(names, tensor, path):
  """`tensor` ('op:0') under any import prefix in a graph with node `names`."""
  op = tensor.split(":")[0]
  matches = [n for n in names if n == op or n.endswith("/" + op)]
  if not matches:
    raise GraphFormatError(f"{path}: tensor '{tensor}' not found in the graph")
  return min(matches, key=len) + ":" + tensor.split(":")[1]


def prune(graph_def, feeds, fetches, path):
  """The frozen graph as a TF2 function `f(*feeds) -> fetches` (names resolved like
  `resolve_tensor`)."""
  names = {node.name for node in graph_def.node}
  feeds = [resolve_tensor(names, t, path) for t in feeds]
  fetches = [resolve_tensor(names, t, path) for t in fetches]

  def import_graph():
    tf.compat.v1.import_graph_def(graph_def, name="")

  wrapped = tf.compat.v1.wrap_function(import_graph, [])
  try:
    return wrapped.prune(feeds=feeds, fetches=fetches)
  except (KeyError, ValueError) as e:
    raise GraphFormatError(f"{path}: cannot prune the graph to {fetches} "
                           f"({str(e).splitlines()[0]})") from None


def max_relative_error(actual, expected):
  """max |a - b| / (max |b| + 1e-6), for checking a converted model against its graph."""
  scale = float(tf.reduce_max(tf.abs(expected))) + 1e-6
  return float(tf.reduce_max(tf.abs(actual - expected))) / scale
