"""The fused training update against its plain formulations: FusedAdam against Adam in
float64 numpy and against Keras' Adam; clip_and_check against tf.clip_by_norm and an entry-wise
finite check."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from gcn_face import optimizer

SHAPES = [(5, 3), (7,), (2, 3, 4)]


def _numpy_adam(values, grads_per_step, lrs, b1=0.9, b2=0.999, eps=1e-8):
  values = [v.astype(np.float64) for v in values]
  m = [np.zeros_like(v) for v in values]
  s = [np.zeros_like(v) for v in values]
  for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
    for i, g in enumerate(grads):
      m[i] = b1 * m[i] + (1 - b1) * g
      s[i] = b2 * s[i] + (1 - b2) * g * g
      alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
      values[i] = values[i] - alpha * m[i] / (np.sqrt(s[i]) + eps)
  return values


def _run(opt_class, values, grads_per_step, schedule):
  variables = [tf.Variable(v) for v in values]
  opt = opt_class(schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-8)

  @tf.function
  def step(grads):
    opt.apply_gradients(zip(grads, variables))

  for grads in grads_per_step:
    step([tf.constant(g) for g in grads])
  return [v.numpy() for v in variables], opt


@pytest.mark.parametrize("scheduled", [False, True])
def test_fused_adam_matches_adam(scheduled):
  rng = np.random.default_rng(0)
  values = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
  grads_per_step = [[rng.normal(scale=10.0 ** -k, size=s).astype(np.float32)
                     for k, s in enumerate(SHAPES)] for _ in range(4)]
  lrs = [1e-2, 1e-2, 5e-3, 5e-3] if scheduled else [1e-2] * 4
  schedule = (keras.optimizers.schedules.PiecewiseConstantDecay([1], [1e-2, 5e-3])
              if scheduled else 1e-2)
  fused, opt = _run(optimizer.FusedAdam, values, grads_per_step, schedule)
  plain, _ = _run(keras.optimizers.Adam, values, grads_per_step, schedule)
  expected = _numpy_adam(values, grads_per_step, lrs)
  assert int(opt.iterations.numpy()) == 4
  for f, p, e, start in zip(fused, plain, expected, values):
    np.testing.assert_allclose(f, e, rtol=0, atol=2e-6)
    np.testing.assert_allclose(f, p, rtol=0, atol=2e-6)
    assert np.all(f != start)  # every entry was updated


def test_fused_adam_checkpoint_restores_into_keras_adam(tmp_path):
  rng = np.random.default_rng(1)
  values = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
  grads_per_step = [[rng.normal(size=s).astype(np.float32) for s in SHAPES]]
  _, fused = _run(optimizer.FusedAdam, values, grads_per_step, 1e-3)
  path = tf.train.Checkpoint(opt=fused).write(str(tmp_path / "ckpt"))
  plain = keras.optimizers.Adam(1e-3)
  plain.build([tf.Variable(v) for v in values])
  tf.train.Checkpoint(opt=plain).read(path).assert_consumed()
  for a, b in zip(fused.variables, plain.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_fused_adam_refuses_what_it_does_not_fuse():
  with pytest.raises(ValueError, match="amsgrad"):
    optimizer.FusedAdam(1e-3, amsgrad=True)


CLIP = 5.0


@pytest.mark.parametrize("name,values", [
    ("below", [0.1, -0.2, 0.3]),
    ("above", [30.0, -40.0, 0.5]),
    ("zero", [0.0, 0.0, 0.0]),
    ("exactly", [3.0, 4.0, 0.0]),
    ("nan", [1.0, np.nan, 2.0]),
    ("inf", [np.inf, 1.0, 2.0]),
    ("overflowing_norm", [3e30, 1.0, 2.0]),
])
def test_clip_and_check_matches_clip_by_norm(name, values):
  tensors = [tf.constant(values, tf.float32), tf.constant([[0.5, 0.5]], tf.float32),
             tf.constant(np.arange(12, dtype=np.float32).reshape(3, 4))]
  clipped, finite = tf.function(lambda t: optimizer.clip_and_check(t, CLIP))(tensors)
  expected_finite = all(np.all(np.isfinite(t.numpy())) for t in tensors)
  assert bool(finite) == expected_finite, name
  for actual, tensor in zip(clipped, tensors):
    if not np.all(np.isfinite(tensor.numpy())):
      continue  # the update is skipped
    reference = tf.clip_by_norm(tensor, CLIP).numpy()
    # Below the bound clip_by_norm computes t * c / c, which can move t by one rounding.
    np.testing.assert_allclose(actual.numpy(), reference, rtol=1e-6, atol=0, err_msg=name)
    if np.linalg.norm(tensor.numpy().astype(np.float64)) <= CLIP:
      np.testing.assert_array_equal(actual.numpy(), tensor.numpy())
  if name == "above":
    np.testing.assert_allclose(np.linalg.norm(clipped[0].numpy()), CLIP, rtol=1e-6)


def test_clip_and_check_of_nothing():
  clipped, finite = optimizer.clip_and_check([], CLIP)
  assert clipped == [] and bool(finite)


def test_clip_norm_of_a_large_tensor_is_accurate():
  """The one-pass sum of squares of a refiner-sized kernel (2.4M entries here) is within float
  rounding of float64: the clipped tensor's norm is the bound."""
  g = np.random.default_rng(4).normal(size=(4_800, 512)).astype(np.float32)
  (clipped,), finite = optimizer.clip_and_check([tf.constant(g)], CLIP)
  assert bool(finite)
  np.testing.assert_allclose(np.linalg.norm(clipped.numpy().astype(np.float64)), CLIP, rtol=1e-6)
  np.testing.assert_allclose(clipped.numpy(), g * (CLIP / np.linalg.norm(g.astype(np.float64))),
                             rtol=1e-6, atol=1e-12)
