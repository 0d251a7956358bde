"""Reader for dlib's DNN serialization of the face-recognition ResNet (facts:
../shared/docs/DLIB_DNN_FORMAT.md).

    network = read_network(path)      # dlib_face_recognition_resnet_model_v1.dat
    network.layers[0].kind, network.layers[0].config, network.layers[0].params

Every record is parsed (no byte is skipped) and checked: known layer kinds,
parameter counts that match each layer's configuration, finite values, the
whole file consumed. A truncated or altered file raises DlibFormatError with
one line naming the file, the byte offset and what was being read.
"""

import collections
import dataclasses
import os

import numpy as np

LOSS_NAME = "loss_metric_2"
INPUT_NAME = "input_rgb_image_sized"
TENSOR_VERSION = 2
ALIAS_VERSION = 1
CON, AFFINE, RELU, ADD_PREV, MAX_POOL, AVG_POOL, FC = (
    "con_4", "affine_", "relu_", "add_prev_", "max_pool_2", "avg_pool_2", "fc_2")
FC_NO_BIAS = 1  # dlib's fc_bias_mode

Layer = collections.namedtuple("Layer", ["kind", "config", "params"])
Layer.__doc__ = """One dlib layer, input to output order.

kind: dlib's record name (con_4, affine_, relu_, add_prev_, max_pool_2, avg_pool_2, fc_2).
config: dict of the record's settings (see `_LAYER_READERS`).
params: float32 array (conv: weights [out, in, kh, kw] and biases [out]; affine: gamma and
  beta [C]; fc: weights [in, out]) as a dict, or None.
"""


class DlibFormatError(ValueError):
  """A dlib network file that is truncated, altered or not the expected network."""


@dataclasses.dataclass(frozen=True)
class DlibNetwork:
  """The parsed file: loss settings, input layer and layers (input to output)."""
  margin: float
  distance_threshold: float
  input_size: tuple  # (rows, cols)
  channel_means: tuple  # (R, G, B), subtracted before dividing by 256
  layers: list
  wrapper_versions: list


class _Reader:
  """Sequential reader of dlib's packed primitives."""

  def __init__(self, data, path):
    self.data, self.pos, self.path = data, 0, path

  def fail(self, message):
    raise DlibFormatError(f"{self.path}: {message} (at byte {self.pos})")

  def _take(self, n, what):
    if n < 0 or self.pos + n > len(self.data):
      self.fail(f"truncated while reading {what}")
    chunk = self.data[self.pos:self.pos + n]
    self.pos += n
    return chunk

  def int(self, what="an integer"):
    control = self._take(1, what)[0]
    size = control & 0x0F
    if size > 8 or control & 0x70:
      self.pos -= 1
      self.fail(f"bad integer control byte 0x{control:02x} while reading {what}")
    value = int.from_bytes(self._take(size, what), "little")
    return -value if control & 0x80 else value

  def bool(self, what="a flag"):
    byte = self._take(1, what)
    if byte not in (b"0", b"1"):
      self.pos -= 1
      self.fail(f"bad boolean byte {byte!r} while reading {what}")
    return byte == b"1"

  def float(self, what="a float"):
    mantissa = self.int(what)
    exponent = self.int(what)
    if abs(exponent) > 1100:
      self.fail(f"exponent {exponent} out of range while reading {what}")
    return float(mantissa) * 2.0 ** exponent

  def string(self, what="a string"):
    n = self.int(what)
    if n > 256:
      self.fail(f"string length {n} is implausible while reading {what}")
    try:
      return self._take(n, what).decode("ascii")
    except UnicodeDecodeError:
      self.fail(f"non-ASCII bytes while reading {what}")

  def dims(self, version, what):
    got = self.int(what)
    if got != version:
      self.fail(f"tensor version {got}, expected {version}, while reading {what}")
    dims = [self.int(what) for _ in range(4)]
    if min(dims) < 0 or np.prod(dims, dtype=np.float64) > 1e8:
      self.fail(f"implausible tensor shape {dims} while reading {what}")
    return dims

  def tensor(self, what):
    dims = self.dims(TENSOR_VERSION, what)
    count = int(np.prod(dims))
    values = np.frombuffer(self._take(4 * count, what), "<f4").astype(np.float32)
    if not np.all(np.isfinite(values)):
      self.fail(f"NaN or infinite values in {what}")
    return dims, values


def _read_learning_rates(r, n, kind):
  """Training-only multipliers of con/fc records (read to stay in step, not used)."""
  for k in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
    r.float(f"layer {n} ({kind}) {k}")


def _read_con(r, n):
  _, params = r.tensor(f"layer {n} (con) parameters")
  keys = ("filters", "rows", "cols", "stride_y", "stride_x", "padding_y", "padding_x")
  config = {k: r.int(f"layer {n} (con) {k}") for k in keys}
  weight_dims = r.dims(ALIAS_VERSION, f"layer {n} (con) weight shape")
  bias_dims = r.dims(ALIAS_VERSION, f"layer {n} (con) bias shape")
  _read_learning_rates(r, n, "con")
  out, cin, kh, kw = weight_dims
  if (out, kh, kw) != (config["filters"], config["rows"], config["cols"]):
    r.fail(f"layer {n} (con): weight shape {weight_dims} disagrees with {config}")
  if bias_dims != [1, out, 1, 1] or params.size != out * cin * kh * kw + out:
    r.fail(f"layer {n} (con): {params.size} parameters for weights {weight_dims} "
           f"and biases {bias_dims}")
  config["inputs"] = cin
  split = out * cin * kh * kw
  return config, {"weights": params[:split].reshape(out, cin, kh, kw), "biases": params[split:]}


def _read_affine(r, n):
  _, params = r.tensor(f"layer {n} (affine) parameters")
  gamma_dims = r.dims(ALIAS_VERSION, f"layer {n} (affine) gamma shape")
  beta_dims = r.dims(ALIAS_VERSION, f"layer {n} (affine) beta shape")
  mode = r.int(f"layer {n} (affine) mode")
  channels = gamma_dims[1]
  if mode != 0 or gamma_dims != beta_dims or params.size != 2 * channels:
    r.fail(f"layer {n} (affine): expected per-channel gamma and beta, got mode {mode}, "
           f"shapes {gamma_dims} {beta_dims}, {params.size} parameters")
  return {"channels": channels}, {"gamma": params[:channels], "beta": params[channels:]}


def _read_pool(kind):
  def read(r, n):
    keys = ("rows", "cols", "stride_y", "stride_x", "padding_y", "padding_x")
    return {k: r.int(f"layer {n} ({kind}) {k}") for k in keys}, None
  return read


def _read_fc(r, n):
  outputs = r.int(f"layer {n} (fc) outputs")
  inputs = r.int(f"layer {n} (fc) inputs")
  dims, params = r.tensor(f"layer {n} (fc) parameters")
  weight_dims = r.dims(ALIAS_VERSION, f"layer {n} (fc) weight shape")
  r.dims(ALIAS_VERSION, f"layer {n} (fc) bias shape")
  bias_mode = r.int(f"layer {n} (fc) bias mode")
  _read_learning_rates(r, n, "fc")
  if bias_mode != FC_NO_BIAS or dims[:2] != [inputs, outputs] or weight_dims[:2] != dims[:2]:
    r.fail(f"layer {n} (fc): expected {inputs}x{outputs} weights without bias, got "
           f"parameters {dims}, weights {weight_dims}, bias mode {bias_mode}")
  return {"inputs": inputs, "outputs": outputs}, {"weights": params.reshape(inputs, outputs)}


_LAYER_READERS = {
    CON: _read_con,
    AFFINE: _read_affine,
    RELU: lambda r, n: ({}, None),
    ADD_PREV: lambda r, n: ({}, None),
    MAX_POOL: _read_pool("max_pool"),
    AVG_POOL: _read_pool("avg_pool"),
    FC: _read_fc,
}


def _read_layer_trailer(r, n):
  """Each add_layer wrapper's state: 3 flags and 3 (empty) cache tensors."""
  for _ in range(3):
    r.bool(f"layer {n} flags")
  for _ in range(3):
    r.tensor(f"layer {n} cache tensor")


def read_network(path):
  """Parses a dlib metric-learning network file (e.g. the face-recognition ResNet).

  Returns:
    DlibNetwork.

  Raises:
    DlibFormatError: missing, truncated or altered file (one line).
  """
  if not os.path.isfile(path):
    raise DlibFormatError(f"{path}: no such file")
  with open(path, "rb") as f:
    r = _Reader(f.read(), path)
  r.int("the loss wrapper version")
  if r.string("the loss layer name") != LOSS_NAME:
    r.fail(f"not a dlib metric-learning network (expected '{LOSS_NAME}' first)")
  margin, threshold = r.float("the loss margin"), r.float("the loss distance threshold")
  versions = []
  while r.pos < len(r.data) and r.data[r.pos] == 0x01 and r.data[r.pos + 1:r.pos + 2] in (
      b"\x01", b"\x02", b"\x03"):
    versions.append(r.int("wrapper versions"))
    if len(versions) > 10000:
      r.fail("too many wrapper versions")
  if r.string("the input layer name") != INPUT_NAME:
    r.fail(f"expected the input layer '{INPUT_NAME}' after {len(versions)} wrapper versions")
  means = tuple(r.float("the input channel means") for _ in range(3))
  size = (r.int("the input rows"), r.int("the input columns"))
  layers = []
  while True:
    n = len(layers)
    kind = r.string(f"layer {n} name")
    if kind not in _LAYER_READERS:
      r.fail(f"unknown layer kind {kind!r} (layer {n})")
    config, params = _LAYER_READERS[kind](r, n)
    _read_layer_trailer(r, n)
    if n == 0:
      r.int("the sample expansion factor")
    layers.append(Layer(kind, config, params))
    if kind == FC:
      break
  if r.pos != len(r.data):
    r.fail(f"{len(r.data) - r.pos} unexpected bytes after the last layer")
  if len(versions) != len(layers) + sum(1 for v in versions if v == 1):
    r.fail(f"{len(versions)} wrapper versions do not match {len(layers)} layers")
  return DlibNetwork(margin, threshold, size, means, layers, versions)
