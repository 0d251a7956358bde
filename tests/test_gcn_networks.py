"""GCN layers and networks (gcn_face.graph/layers/networks/critic/refiner_input)."""

import numpy as np
import pytest
import scipy.sparse
import tensorflow as tf

from gcn_face import critic, graph, layers, mesh_sampling, networks, refiner_input
from tests.meshes import wavy_grid


@pytest.fixture(scope="module")
def small_graph():
  """A 5-level hierarchy of a 24 x 24 patch (576 vertices)."""
  v, f = wavy_grid(24)
  return mesh_sampling.build(v, f, factors=(2, 2, 2, 2)), None


@pytest.fixture(scope="module")
def small(small_graph):
  sampling, _ = small_graph
  return sampling, graph.MeshGraph(sampling)


def chebyshev_reference(lap, x, kernel, order):
  """Numpy/scipy: T_k of L - I applied to x [M, B, Fin]; kernel rows fin * K + k."""
  lt = (scipy.sparse.csr_matrix(lap, dtype=np.float64) - scipy.sparse.identity(lap.shape[0])).tocsr()
  m, b, fin = x.shape
  terms = [x.reshape(m, -1).astype(np.float64)]
  if order > 1:
    terms.append(lt @ terms[0])
  for _ in range(2, order):
    terms.append(2 * (lt @ terms[-1]) - terms[-2])
  t = np.stack([term.reshape(m, b, fin) for term in terms], -1)  # [M, B, Fin, K]
  return t.reshape(m, b, fin * order) @ kernel.astype(np.float64)


@pytest.mark.parametrize("fin,fout,order", [(3, 8, 6), (8, 3, 6), (5, 5, 1), (4, 2, 2), (6, 4, 3)])
def test_chebconv_matches_scipy(small, fin, fout, order):
  sampling, g = small
  conv = layers.ChebConv(g.laplacians[1], fout, order)
  x = np.random.default_rng(fin).normal(size=(sampling.sizes[1], 2, fin)).astype(np.float32)
  y = conv(tf.constant(x)).numpy()
  assert conv.kernel.shape == (fin * order, fout)
  expected = chebyshev_reference(sampling.laplacians[1], x, conv.kernel.numpy(), order)
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_sparse_operator_forward_and_gradient(small):
  sampling, _ = small
  u = sampling.up[0]
  op = graph.SparseOperator(u)
  x = tf.constant(np.random.default_rng(0).normal(size=(u.shape[1], 3, 2)).astype(np.float32))
  g = tf.constant(np.random.default_rng(1).normal(size=(u.shape[0], 3, 2)).astype(np.float32))
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = op(x)
    loss = tf.reduce_sum(y * g)
  np.testing.assert_allclose(y.numpy(), (u @ x.numpy().reshape(u.shape[1], -1)).reshape(-1, 3, 2),
                             atol=1e-5)
  np.testing.assert_allclose(tape.gradient(loss, x).numpy(),
                             (u.T @ g.numpy().reshape(u.shape[0], -1)).reshape(-1, 3, 2), atol=1e-5)


def test_sparse_operator_rejects_nan():
  with pytest.raises(ValueError, match="NaN"):
    graph.SparseOperator(scipy.sparse.csr_matrix(np.array([[np.nan, 1.0]])))


@pytest.mark.parametrize("model,wide", [("normal", False), ("normal", True), ("resnet", False)])
def test_generator_shapes_range_and_gradients(small, model, wide):
  sampling, g = small
  gen = networks.MeshGenerator(g, model=model, wide=wide, nz=32)
  rng = np.random.default_rng(0)
  emb = tf.constant(rng.normal(size=(2, 40)).astype(np.float32))
  per_vertex = tf.constant(rng.uniform(-1, 1, (2, sampling.sizes[0], 7)).astype(np.float32))
  with tf.GradientTape() as tape:
    out = gen((emb, per_vertex))
    loss = tf.reduce_mean(out ** 2) + tf.add_n(gen.losses)
  assert out.shape == (2, sampling.sizes[0], 3)
  assert np.all(np.abs(out.numpy()) <= 1.0)  # tanh; float32 rounds saturated values to 1
  grads = tape.gradient(loss, gen.trainable_variables)
  for var, grad in zip(gen.trainable_variables, grads):
    assert grad is not None and np.any(grad.numpy() != 0), var.path
  names = {v.path.split("/")[1] for v in gen.trainable_variables}
  assert names == {"mesh_decoder", "mesh_refiner", "mesh_concat"}
  assert all(v.path.startswith("mesh_generator/") for v in gen.trainable_variables)
  # the L2 regulariser covers exactly the FC weights and biases
  fc = [v for v in gen.trainable_variables if "/fc" in v.path]
  expected = 0.5 * layers.FC_WEIGHT_DECAY * sum(float(tf.reduce_sum(v ** 2)) for v in fc)
  np.testing.assert_allclose(float(tf.add_n(gen.losses)), expected, rtol=1e-5)


@pytest.mark.parametrize("shape", [(7,), (33, 5), (3, 4, 2)])
def test_weight_decay_value_and_gradient(shape):
  w = np.random.default_rng(len(shape)).normal(size=shape).astype(np.float32)
  var = tf.Variable(w)
  with tf.GradientTape() as tape:
    value = layers.WeightDecay(layers.FC_WEIGHT_DECAY)(var)
  w64 = w.astype(np.float64)
  np.testing.assert_allclose(float(value), layers.FC_WEIGHT_DECAY * 0.5 * np.sum(w64 ** 2),
                             rtol=1e-6)
  np.testing.assert_allclose(tape.gradient(value, var).numpy(), layers.FC_WEIGHT_DECAY * w64,
                             rtol=1e-6)


def test_generator_depends_on_the_right_inputs(small):
  sampling, g = small
  gen = networks.MeshGenerator(g, nz=16)
  rng = np.random.default_rng(1)
  emb = rng.normal(size=(1, 20)).astype(np.float32)
  pv = rng.uniform(-1, 1, (1, sampling.sizes[0], 7)).astype(np.float32)
  base = gen((emb, pv)).numpy()
  assert not np.allclose(gen((emb + 1.0, pv)).numpy(), base)
  assert not np.allclose(gen((emb, pv * 0.5)).numpy(), base)
  dec = gen.decoder(emb).numpy()
  np.testing.assert_array_equal(gen.decoder(emb).numpy(), dec)  # deterministic
  ref = gen.refiner(pv).numpy()
  # one sample does not leak into another (batch independence)
  pair = gen.refiner(np.concatenate([pv, -pv])).numpy()
  np.testing.assert_allclose(pair[:1], ref, atol=1e-5)


@pytest.mark.parametrize("ablation,unused", [("no_decoder", 0), ("no_refiner", 1)])
def test_ablations_leave_a_branch_out(small, ablation, unused):
  sampling, g = small
  full = networks.MeshGenerator(g, nz=16)
  gen = networks.MeshGenerator(g, nz=16, ablation=ablation)
  rng = np.random.default_rng(2)
  inputs = [rng.normal(size=(1, 20)).astype(np.float32),
            rng.uniform(-1, 1, (1, sampling.sizes[0], 7)).astype(np.float32)]
  base = gen(tuple(inputs)).numpy()
  changed = list(inputs)
  changed[unused] = changed[unused] * 0.5 + 1.0
  np.testing.assert_array_equal(gen(tuple(changed)).numpy(), base)
  full(tuple(inputs))
  assert 0 < len(gen.trainable_variables) < len(full.trainable_variables)
  with pytest.raises(ValueError, match="ablation must be one of"):
    networks.MeshGenerator(g, ablation="no_combine")


def test_paper_variant_inputs(small):
  sampling, g = small
  gen = networks.MeshGenerator(g, nz=8)
  out = gen((tf.zeros([1, networks.FACENET_POOL_DIM]), tf.zeros([1, sampling.sizes[0], 3])))
  assert out.shape == (1, sampling.sizes[0], 3)
  assert gen.decoder.fc.kernel.shape[0] == networks.FACENET_POOL_DIM
  assert gen.refiner.conv0.kernel.shape[0] == 3 * layers.CHEB_ORDER


def test_weights_round_trip(small, tmp_path):
  sampling, g = small
  rng = np.random.default_rng(2)
  inputs = (rng.normal(size=(1, 10)).astype(np.float32),
            rng.uniform(-1, 1, (1, sampling.sizes[0], 7)).astype(np.float32))
  a = networks.MeshGenerator(g, nz=8)
  expected = a(inputs).numpy()
  a.save_weights(str(tmp_path / "gen.weights.h5"))
  b = networks.MeshGenerator(g, nz=8)
  b(inputs)
  assert not np.allclose(b(inputs).numpy(), expected)
  b.load_weights(str(tmp_path / "gen.weights.h5"))
  np.testing.assert_array_equal(b(inputs).numpy(), expected)
  c = networks.MeshGenerator(g, nz=4)  # another architecture must not load silently
  c(inputs)
  with pytest.raises(ValueError):
    c.load_weights(str(tmp_path / "gen.weights.h5"))


def test_bfm_sizes_and_parameter_count(bfm_sampling):
  g = graph.MeshGraph(bfm_sampling)
  gen = networks.MeshGenerator(g)
  out = gen((tf.zeros([1, networks.EMBEDDING_DIM]), tf.zeros([1, 35709, 7])))
  assert out.shape == (1, 35709, 3)
  count = sum(int(np.prod(v.shape)) for v in gen.trainable_variables)
  assert count == 35_876_082  # the release's 35.9 M: FC 3840 -> 140*32, 17920 -> 512 -> 17920, ...
  assert gen.decoder.fc.kernel.shape == (3840, 140 * 32)
  assert gen.refiner.fc_in.kernel.shape == (140 * 128, 512)


def test_bad_inputs(small):
  sampling, g = small
  gen = networks.MeshGenerator(g, nz=8)
  with pytest.raises(ValueError, match=r"expected \[B, 576, C\]"):
    gen((tf.zeros([1, 4]), tf.zeros([1, 100, 7])))
  with pytest.raises(ValueError, match="embedding must be"):
    gen.decoder(tf.zeros([1, 4, 2]))
  v, f = wavy_grid(10)
  with pytest.raises(ValueError, match="need 5 mesh levels"):
    networks.MeshGenerator(graph.MeshGraph(mesh_sampling.build(v, f, factors=(2, 2))))
  with pytest.raises(ValueError, match="model must be"):
    networks.GcnDecoder(g, model="dense")


def test_critic_shapes_names_and_input_gradient():
  d = critic.ImageCritic()
  x = tf.random.uniform([2, 224, 224, 3], -1, 1)
  with tf.GradientTape() as tape:
    tape.watch(x)
    score = d(x, training=True)
    total = tf.reduce_sum(score)
  assert score.shape == (2,)
  grad = tape.gradient(total, x)
  assert grad.shape == x.shape and np.any(grad.numpy() != 0)
  assert all(v.path.startswith("image_disc/") for v in d.variables)
  kernels = [v for v in d.trainable_variables if v.path.endswith("kernel")]
  assert [k.shape[-1] for k in kernels] == [16, 32, 64, 128, 256, 512, 1]
  assert not any("gamma" in v.path for v in d.variables)  # BatchNorm without scale
  with pytest.raises(ValueError, match="224, 224, 3"):
    d(tf.zeros([1, 112, 112, 3]))


def test_refiner_input_hand_computed():
  # vertex 0 at the origin looks at the camera -> pixel (112, 112); vertex 1 faces away;
  # vertex 2 lies far outside the image -> clamped to the corner (223, 0).
  vertices = tf.constant([[[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [-50.0, -50.0, 0.0]]])
  normals = tf.constant([[[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]])
  image = np.zeros((1, 224, 224, 3), np.float32)
  image[0, 112, 112] = [0.1, 0.2, 0.3]
  image[0, 223, 0] = [0.7, 0.8, 0.9]
  mask = np.ones((1, 224, 224), np.float32)
  albedo = tf.constant([[[0.5, 0.5, 0.5]] * 3])
  per_vertex, vis = refiner_input.refiner_input(albedo, tf.constant(image), tf.constant(mask),
                                                vertices, normals)
  np.testing.assert_array_equal(vis.numpy(), [[1.0, 0.0, 1.0]])
  np.testing.assert_allclose(per_vertex.numpy()[0], [
      [0.5, 0.5, 0.5, 0.1, 0.2, 0.3, 1.0],
      [0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0],
      [0.5, 0.5, 0.5, 0.7, 0.8, 0.9, 1.0]], atol=1e-6)
  # u = 112 + 1015 x / 10 = 162.75 -> col 163; row = 224 - v_up = 61.25 -> 61
  np.testing.assert_array_equal(refiner_input.vertex_pixels(vertices).numpy()[0, 1], [61, 163])
  mask[0, 112, 112] = 0.0
  _, vis = refiner_input.refiner_input(albedo, tf.constant(image), tf.constant(mask), vertices, normals)
  assert vis.numpy()[0, 0] == 0.0
  paper, _ = refiner_input.refiner_input(albedo, tf.constant(image), tf.constant(mask), vertices,
                                         normals, mode="paper")
  assert paper.shape == (1, 3, 3)
  with pytest.raises(ValueError, match="mode"):
    refiner_input.refiner_input(albedo, tf.constant(image), tf.constant(mask), vertices, normals, "x")
  with pytest.raises(ValueError, match="224"):
    refiner_input.refiner_input(albedo, tf.zeros([1, 100, 100, 3]), tf.constant(mask), vertices, normals)


def _generator_inputs(sampling, channels, seed=0):
  rng = np.random.default_rng(seed)
  per_vertex = rng.uniform(-1, 1, (2, sampling.sizes[0], channels)).astype(np.float32)
  return tf.constant(rng.normal(size=(2, 16)).astype(np.float32)), tf.constant(per_vertex)


@pytest.mark.parametrize("channels,ablation", [(10, "none"), (7, "none"), (3, "no_decoder"),
                                               (10, "no_refiner")])
def test_start_from_coarse_is_exactly_the_coarse_texture_at_step_zero(small, channels, ablation):
  sampling, g = small
  gen = networks.MeshGenerator(g, start="coarse", ablation=ablation, residual_gain=30.0)
  embedding, per_vertex = _generator_inputs(sampling, channels)
  out = gen((embedding, per_vertex))
  np.testing.assert_array_equal(out.numpy(), per_vertex.numpy()[..., :3])
  # Only the zero-initialised Combine Net gets a gradient at step zero, and it is not zero:
  # the first update moves the output.
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(tf.abs(gen((embedding, per_vertex)) - 0.3))
  grads = dict(zip([v.path for v in gen.trainable_variables],
                   tape.gradient(loss, gen.trainable_variables)))
  combine = [k for k in grads if "mesh_concat" in k]
  assert combine and np.abs(grads[combine[0]].numpy()).max() > 0
  # the release's start is not the coarse texture
  release = networks.MeshGenerator(g, start="release")((embedding, per_vertex))
  assert np.abs(release.numpy() - per_vertex.numpy()[..., :3]).max() > 1e-3


def test_start_from_coarse_residual_and_clipping(small):
  sampling, g = small
  gen = networks.MeshGenerator(g, start="coarse", residual_gain=2.0)
  embedding, per_vertex = _generator_inputs(sampling, 10)
  gen((embedding, per_vertex))  # builds the layers
  kernel = gen.combine.conv.kernel
  weights = np.zeros(kernel.shape, np.float32)
  order = gen.combine.conv.order
  for c in range(3):  # the order-0 term of the input's channel 13 + c -> output c
    weights[(3 + 3 + 7 + c) * order, c] = 0.5
  kernel.assign(weights)
  expected = np.clip(per_vertex.numpy()[..., :3] + 2.0 * 0.5 * per_vertex.numpy()[..., 7:10],
                     -1, 1)
  np.testing.assert_allclose(gen((embedding, per_vertex)).numpy(), expected, atol=1e-6)
  with pytest.raises(ValueError, match="start"):
    networks.MeshGenerator(g, start="zero")


def test_exact_sampling_and_delit_residual():
  # A vertex at the optical axis projects to pixel centre 111.5: halfway between 111 and 112.
  vertices = tf.constant([[[0.0, 0.0, 0.0], [-50.0, 50.0, 0.0]]])
  normals = tf.constant([[[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]])
  image = np.zeros((1, 224, 224, 3), np.float32)
  image[0, 111:113, 111:113] = [[[0.2, 0.0, -0.2], [0.4, 0.0, -0.2]],
                                [[0.6, 0.0, -0.2], [0.8, 0.0, -0.2]]]
  np.testing.assert_allclose(refiner_input.sample_bilinear(tf.constant(image), vertices)[0, 0],
                             [0.5, 0.0, -0.2], atol=1e-6)
  np.testing.assert_array_equal(refiner_input.exact_pixels(vertices).numpy()[0],
                                [[112, 112], [0, 0]])  # round half to even; clamped corner
  colors = tf.constant([[[0.5, 0.0, -0.2], [0.5, 0.0, -0.2]]])
  shading = tf.constant([[[0.5, 1.0, 2.0], [0.1, 1.0, 1.0]]])
  coarse = tf.constant([[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
  residual = refiner_input.delit_residual(coarse, colors, shading, tf.constant([[1.0, 1.0]]))
  # P_255 = (P + 1) 127.5 = 191.25, 127.5, 102; / S = 382.5 -> 255 (clipped), 127.5, 51
  np.testing.assert_allclose(residual.numpy()[0, 0], [1.0, 0.0, 51 / 127.5 - 1], atol=1e-6)
  np.testing.assert_array_equal(residual.numpy()[0, 1], 0.0)  # in deep shadow (S < 0.2)
  per_vertex, _ = refiner_input.refiner_input(coarse, tf.constant(image), tf.ones([1, 224, 224]),
                                              vertices, normals, "delit", tf.ones([1, 2, 3]))
  assert per_vertex.shape == (1, 2, 10)
  np.testing.assert_allclose(per_vertex.numpy()[0, 0, 7:], [0.5, 0.0, -0.2], atol=1e-6)
  with pytest.raises(ValueError, match="shading"):
    refiner_input.refiner_input(coarse, tf.constant(image), tf.ones([1, 224, 224]), vertices,
                                normals, "delit")
