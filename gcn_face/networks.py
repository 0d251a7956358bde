"""The texture refinement networks (SPEC 3.4-3.7): GCN Decoder, GCN Refiner, Combine Net.

All three act on the mesh hierarchy of a `graph.MeshGraph` (level 0 = the
35,709-vertex BFM front face). Inputs and outputs are batch-major:

- `GcnDecoder`: face embedding `[B, E]` (E = 3840 = R-Net pool5 2048 + FaceNet
  1792 in the release, 1792 for the paper's FaceNet-only variant) -> per-vertex
  colours `[B, M0, 3]`, ELU range (> -1).
- `GcnRefiner`: per-vertex input `[B, M0, C]` (C = 7 in the release: coarse
  albedo, sampled image colour x visibility, visibility; 3 in the paper; see
  `refiner_input`) -> `[B, M0, 3]`, ELU range.
- `CombineNet`: both `[B, M0, 3]` -> fine albedo T' `[B, M0, 3]` in (-1, 1).
- `MeshGenerator` ("mesh_generator"): the three together,
  `(embedding, refiner_input)` -> T', with sub-models named "mesh_decoder",
  "mesh_refiner" and "mesh_concat" as in the release's variable scopes.

`model="resnet"` swaps in the residual variants of SPEC 3.7; `wide=True` the
wider decoder. The face colours are on the [-1, 1] scale (x / 127.5 - 1).
"""

import keras
import tensorflow as tf

from gcn_face import layers

RNET_POOL5_DIM = 2048  # resnet_v1_50/pool5 of Deep3D's R-Net
FACENET_POOL_DIM = 1792  # InceptionResnetV1/Logits/AvgPool_1a_8x8 (SPEC 3.2)
EMBEDDING_DIM = RNET_POOL5_DIM + FACENET_POOL_DIM  # 3840, the release's decoder input
NZ = 512  # --nz: refiner bottleneck
DECODER_FILTERS = (32, 16, 16, 16, 16)  # SPEC 3.4
DECODER_FILTERS_WIDE = (32, 32, 64, 128, 256)  # --wide
REFINER_FILTERS = (16, 32, 64, 128)  # SPEC 3.5
RESNET_DECODER_BLOCKS = (16, 16, 16, 3)  # SPEC 3.7
RESNET_REFINER_FILTERS = (16, 32)
OUTPUT_CHANNELS = 3
NUM_LEVELS = len(REFINER_FILTERS) + 1  # the template and four decimations
MODELS = ("normal", "resnet")


def _to_vertex_major(x):
  """[B, M, F] <-> [M, B, F] (the swap is its own inverse)."""
  return tf.transpose(x, [1, 0, 2])


_to_batch_major = _to_vertex_major


def _check_arguments(graph, model):
  if model not in MODELS:
    raise ValueError(f"model must be one of {MODELS}, got {model!r}")
  if graph.num_levels != NUM_LEVELS:
    raise ValueError(f"the networks need {NUM_LEVELS} mesh levels ({NUM_LEVELS - 1} decimation "
                     f"factors), got {graph.num_levels} (sizes {graph.sizes})")


def _check_vertices(name, x, expected):
  if x.shape.rank != 3 or (x.shape[1] is not None and x.shape[1] != expected):
    raise ValueError(f"{name}: expected [B, {expected}, C], got {x.shape}")


class GcnDecoder(keras.Model):
  """Embedding -> per-vertex colours through FC and unpool + ChebConv stages (SPEC 3.4)."""

  def __init__(self, graph, model="normal", wide=False, order=layers.CHEB_ORDER,
               name="mesh_decoder", **kwargs):
    super().__init__(name=name, **kwargs)
    _check_arguments(graph, model)
    self.graph, self.model = graph, model
    top = graph.num_levels - 1
    filters = DECODER_FILTERS_WIDE if wide else DECODER_FILTERS
    self.start_channels = filters[0]
    self.fc = layers.dense(graph.sizes[top] * self.start_channels, "fc")
    self.stages = []
    if model == "normal":
      for i, level in enumerate(range(top - 1, -1, -1)):
        self.stages.append((level, layers.ChebConv(graph.laplacians[level], filters[i + 1], order,
                                                   name=f"cheb{i + 1}"),
                            layers.BiasAct(name=f"act{i + 1}")))
      self.out_conv = layers.ChebConv(graph.laplacians[0], OUTPUT_CHANNELS, order, name="cheb_out")
      self.out_act = layers.BiasAct(name="act_out")
    else:
      for i, level in enumerate(range(top - 1, -1, -1)):
        self.stages.append((level, layers.ResBlock(graph.laplacians[level], RESNET_DECODER_BLOCKS[i], order,
                                                   name=f"block{i + 1}"), None))

  def call(self, embedding):
    if embedding.shape.rank != 2:
      raise ValueError(f"{self.name}: embedding must be [B, E], got {embedding.shape}")
    top = self.graph.num_levels - 1
    x = self.fc(embedding)
    x = _to_vertex_major(tf.reshape(x, [-1, self.graph.sizes[top], self.start_channels]))
    for level, conv, act in self.stages:
      x = conv(self.graph.up[level](x))
      if act is not None:
        x = act(x)
    if self.model == "normal":
      x = self.out_act(self.out_conv(x))
    return _to_batch_major(x)


class GcnRefiner(keras.Model):
  """Per-vertex input -> colours through a mesh U-Net with an FC bottleneck (SPEC 3.5)."""

  def __init__(self, graph, model="normal", nz=NZ, order=layers.CHEB_ORDER,
               name="mesh_refiner", **kwargs):
    super().__init__(name=name, **kwargs)
    _check_arguments(graph, model)
    self.graph, self.model = graph, model
    lap = graph.laplacians
    if model == "normal":
      f = REFINER_FILTERS
      top = len(f)
      self.conv0 = layers.ChebConv(lap[0], f[0], order, name="cheb0")
      self.encoder = [(layers.ChebConv(lap[l + 1], f[l], order, name=f"enc{l + 1}"),
                       layers.BiasAct(name=f"enc{l + 1}_act")) for l in range(top)]
      self.fc_in = layers.dense(nz, "fc_bottleneck")
      self.fc_out = layers.dense(graph.sizes[top] * f[-1], "fc_expand")
      self.decoder = [(layers.ChebConv(lap[l], f[l], order, name=f"dec{top - l}"),
                       layers.BiasAct(name=f"dec{top - l}_act")) for l in range(top - 1, -1, -1)]
      self.out_conv = layers.ChebConv(lap[0], OUTPUT_CHANNELS, order, name="cheb_out")
      self.out_act = layers.BiasAct(name="act_out")
    else:
      a, b = RESNET_REFINER_FILTERS
      self.blocks = [layers.ResBlock(lap[0], a, order, name="block1"),
                     layers.ResBlock(lap[1], b, order, name="block2"),
                     layers.ResBlock(lap[1], b, order, name="block3"),
                     layers.ResBlock(lap[0], a, order, name="block4"),
                     layers.ResBlock(lap[0], OUTPUT_CHANNELS, order, name="block5")]

  def call(self, per_vertex):
    _check_vertices(self.name, per_vertex, self.graph.sizes[0])
    x = _to_vertex_major(per_vertex)
    g = self.graph
    if self.model == "resnet":
      b1, b2, b3, b4, b5 = self.blocks
      x = b3(b2(g.down[0](b1(x))))
      return _to_batch_major(b5(b4(g.up[0](x))))
    x = self.conv0(x)
    skips = []
    for level, (conv, act) in enumerate(self.encoder):
      x = act(conv(g.down[level](x)))
      skips.append(x)
    top = len(self.encoder)
    m, channels = g.sizes[top], x.shape[-1]
    flat = tf.reshape(_to_batch_major(x), [-1, m * channels])
    x = _to_vertex_major(tf.reshape(self.fc_out(self.fc_in(flat)), [-1, m, channels]))
    for (conv, act), level in zip(self.decoder, range(top - 1, -1, -1)):
      x = g.up[level](x)
      if level >= top - 2 and level >= 1:  # the release concatenates e3 and e2 (SPEC 3.5)
        x = tf.concat([x, skips[level - 1]], axis=-1)
      x = act(conv(x))
    return _to_batch_major(self.out_act(self.out_conv(x)))


STARTS = ("release", "coarse")


class CombineNet(keras.Model):
  """concat(decoder, refiner) -> ChebConv(L0, 3, K=6), no bias -> tanh (SPEC 3.6).

  residual=True (the start-from-coarse generator, this project's): the ChebConv also sees
  the refiner's per-vertex input (a level-0 path for detail the refiner's coarse levels
  cannot carry), its kernel starts at zero and its output is added to the coarse albedo
  (the input's first 3 channels): T' = clip(T_pca + gain * ChebConv(...), -1, 1), so
  T' = T_pca exactly before the first update. `gain` scales the branch (and so how fast
  Adam, whose steps are ~lr per weight, can move it).
  """

  def __init__(self, graph, order=layers.CHEB_ORDER, residual=False, gain=1.0,
               name="mesh_concat", **kwargs):
    super().__init__(name=name, **kwargs)
    self.graph, self.residual, self.gain = graph, residual, float(gain)
    self.conv = layers.ChebConv(graph.laplacians[0], OUTPUT_CHANNELS, order, zero_init=residual,
                                name="cheb")

  def call(self, inputs):
    decoded, refined = inputs[:2]
    _check_vertices(self.name, decoded, self.graph.sizes[0])
    _check_vertices(self.name, refined, self.graph.sizes[0])
    if not self.residual:
      x = _to_vertex_major(tf.concat([decoded, refined], axis=-1))
      return _to_batch_major(tf.tanh(self.conv(x)))
    per_vertex = inputs[2]
    _check_vertices(self.name, per_vertex, self.graph.sizes[0])
    x = _to_vertex_major(tf.concat([decoded, refined, per_vertex], axis=-1))
    delta = self.gain * _to_batch_major(self.conv(x))
    return tf.clip_by_value(per_vertex[..., :OUTPUT_CHANNELS] + delta, -1.0, 1.0)


ABLATIONS = ("none", "no_decoder", "no_refiner")


class MeshGenerator(keras.Model):
  """GCN Decoder + GCN Refiner + Combine Net: `(embedding [B,E], per_vertex [B,M0,C])` -> T'.

  ablation: "no_decoder" / "no_refiner" leave that branch out (not built, its 3 output
  channels zero), for the paper's ablation rows; "none" is the full network.
  start: "release" (T' = tanh of the Combine Net, the release) or "coarse" (a residual on
  the coarse albedo, per_vertex[..., :3], that is exactly T_pca at initialisation; see
  CombineNet), with `residual_gain`.
  """

  def __init__(self, graph, model="normal", wide=False, nz=NZ, order=layers.CHEB_ORDER,
               ablation="none", start="release", residual_gain=1.0, name="mesh_generator",
               **kwargs):
    super().__init__(name=name, **kwargs)
    if ablation not in ABLATIONS:
      raise ValueError(f"ablation must be one of {ABLATIONS}, got {ablation!r}")
    if start not in STARTS:
      raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    self.ablation, self.start = ablation, start
    self.decoder = GcnDecoder(graph, model, wide, order) if ablation != "no_decoder" else None
    self.refiner = GcnRefiner(graph, model, nz, order) if ablation != "no_refiner" else None
    self.combine = CombineNet(graph, order, residual=start == "coarse", gain=residual_gain)

  def call(self, inputs):
    embedding, per_vertex = inputs
    zeros = tf.zeros_like(per_vertex[..., :OUTPUT_CHANNELS])
    decoded = self.decoder(embedding) if self.decoder is not None else zeros
    refined = self.refiner(per_vertex) if self.refiner is not None else zeros
    return self.combine((decoded, refined, per_vertex))
