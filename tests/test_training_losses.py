"""Loss terms, schedule, mask morphology and symmetric pairs on tiny inputs with hand-computed
values (scipy.ndimage as the independent morphology reference), WGAN-GP on a linear critic."""

import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from gcn_face import losses, masks, symmetry


def test_refine_and_projection():
  fine = tf.constant([[[0.5, 0.0, -0.5], [1.0, 1.0, 1.0]]])
  coarse = tf.constant([[[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]]])
  # |diff| = 0.5 0 0.5 0 1 0 -> mean 2/6
  assert float(losses.refine_loss(fine, coarse)) == pytest.approx(2 / 6)
  image = tf.constant([[[0.5, 0.5, 0.5], [0.0, 0.0, 0.0]]])
  vis = tf.constant([[1.0, 0.0]])
  # visible vertex 0: |fine - image| = 0 0.5 1 -> 1.5 / 6; invisible vertex 1: |fine - coarse|
  # = 0 1 0 -> 0.3 * 1 / 6
  expected = 1.5 / 6 + 0.3 * 1.0 / 6
  assert float(losses.projection_loss(fine, image, coarse, vis)) == pytest.approx(expected)


def test_identity_loss():
  a = tf.constant([[1.0, 0.0], [0.0, 2.0]])
  b = tf.constant([[1.0, 1.0], [0.0, -3.0]])
  expected = 1.0 - (np.sqrt(0.5) + -1.0) / 2
  assert float(losses.identity_loss(a, b)) == pytest.approx(expected, rel=1e-6)
  assert np.isfinite(float(losses.identity_loss(tf.zeros([2, 2]), b)))  # zero features


def test_symmetry_and_variance():
  albedo = tf.constant([[[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])
  pairs = tf.constant([[0, 1], [2, 3]])
  assert float(losses.symmetry_loss(albedo, pairs)) == pytest.approx((5.0 + 0.0) / 2, abs=1e-6)
  assert float(losses.symmetry_loss(albedo, tf.zeros([0, 2], tf.int32))) == 0.0
  # Skin vertices 0 and 1: per-channel variances 2.25, 4, 0 -> mean 6.25 / 3.
  assert float(losses.skin_variance_loss(albedo, tf.constant([0, 1]))) == pytest.approx(6.25 / 3)
  grad = tf.GradientTape
  with grad() as tape:
    tape.watch(albedo)
    value = losses.symmetry_loss(albedo, pairs)
  assert np.all(np.isfinite(tape.gradient(value, albedo)))  # sqrt(0 + eps) is differentiable


def test_masked_l1_and_empty_mask():
  rendered = tf.fill([1, 2, 2, 3], 0.5)
  image = tf.zeros([1, 2, 2, 3])
  mask = tf.constant([[[1.0, 0.0], [0.0, 1.0]]])
  # numerator: 2 pixels x 3 channels x 0.5 = 3; denominator 2.
  assert float(losses.masked_l1(rendered, image, mask)) == pytest.approx(1.5)
  assert float(losses.masked_l1(rendered, image, tf.zeros([1, 2, 2]))) == 0.0


def test_objective_weights():
  terms = {"refine": 1.0, "proj": 2.0, "id": 3.0, "sym": 4.0, "var": 5.0, "pixel": 7.0,
           "proj_invisible": 0.5}
  release = 0.8 * 1.0 + 0.2 * (2.0 + 0.2 * 3.0 + 0.5 * 4.0 + 0.01 * 5.0) + 0.1
  assert losses.objective(terms, 0.2, 0.8, 0.1) == pytest.approx(release)
  paper = 0.8 * 1.0 + 0.2 * (7.0 + 0.5 + 0.2 * 3.0 + 0.5 * 4.0 + 0.01 * 5.0) + 0.1
  assert losses.objective(terms, 0.2, 0.8, 0.1, "paper") == pytest.approx(paper)
  with pytest.raises(ValueError, match="objective must be one of"):
    losses.objective(terms, 1.0, 1.0, 0.0, "mine")


def test_wgan_gp_on_a_linear_critic():
  """D(x) = <w, x>: gradient norm |w| everywhere, so GP = 10 (|w| - 1)^2 exactly."""
  w = tf.constant(np.random.default_rng(0).normal(size=(1, 4, 4, 3)), tf.float32)
  critic = lambda x, training: tf.reduce_sum(x * w, axis=[1, 2, 3])
  real = tf.ones([2, 4, 4, 3])
  fake = -tf.ones([2, 4, 4, 3])
  loss, stats = losses.critic_loss(critic, real, fake, tf.constant([1, 2]), adv_lambda=1.0)
  norm = float(tf.norm(w))
  assert float(stats["gradient_penalty"]) == pytest.approx(10 * (norm - 1) ** 2, rel=1e-5)
  d_real, d_fake = float(tf.reduce_sum(w)), -float(tf.reduce_sum(w))
  assert float(loss) == pytest.approx(d_fake - d_real + 10 * (norm - 1) ** 2, rel=1e-5)
  assert float(losses.generator_adversarial_loss(critic, fake, 2.0)) == pytest.approx(-2 * d_fake,
                                                                                       rel=1e-5)


def test_interpolation_weights_per_sample_or_batch():
  real, fake = tf.ones([3, 2, 2, 1]), tf.zeros([3, 2, 2, 1])
  per_sample = losses.interpolates(real, fake, tf.constant([0, 1])).numpy()[:, 0, 0, 0]
  per_batch = losses.interpolates(real, fake, tf.constant([0, 1]), per_sample=False).numpy()
  assert len(set(per_sample.round(6))) == 3
  assert len(set(per_batch.ravel().round(6))) == 1


@pytest.mark.parametrize("per_sample", [True, False])
def test_replicas_interpolate_with_their_slice_of_the_global_batch(per_sample):
  real, fake = tf.ones([6, 2, 2, 1]), tf.zeros([6, 2, 2, 1])
  seed = tf.constant([4, 7])
  whole = losses.interpolates(real, fake, seed, per_sample).numpy()
  slices = [losses.interpolates(real[2 * i:2 * i + 2], fake[2 * i:2 * i + 2], seed, per_sample,
                                (i, 3)).numpy() for i in range(3)]
  np.testing.assert_array_equal(np.concatenate(slices), whole)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_morphology_matches_scipy(seed):
  rng = np.random.default_rng(seed)
  mask = (scipy.ndimage.gaussian_filter(rng.random((40, 36)), 3) > 0.5).astype(np.float32)
  mask[:3, :] = 1.0  # touches the border: outside samples must be ignored
  five, nine = masks.element(masks.ELLIPSE_5), masks.element(masks.ELLIPSE_9)
  dilated = scipy.ndimage.binary_dilation(mask, five, border_value=0)
  eroded = scipy.ndimage.binary_erosion(dilated, nine, border_value=1)
  expected = scipy.ndimage.binary_erosion(eroded, nine, border_value=1)
  np.testing.assert_array_equal(masks.dilate(mask[None], five).numpy()[0], dilated)
  np.testing.assert_array_equal(masks.eroded_skin_mask(mask[None]).numpy()[0], expected)
  assert 0 < expected.sum() < mask.sum()


def test_elements_are_opencv_ellipses():
  nine = masks.element(masks.ELLIPSE_9)
  assert nine.sum() == 57 and masks.element(masks.ELLIPSE_5).sum() == 17
  np.testing.assert_array_equal(nine, np.fliplr(nine))


def test_mirror_pairs():
  x, y = np.meshgrid(np.linspace(-1, 1, 9), np.linspace(0, 1, 5))
  vertices = np.stack([x.ravel(), y.ravel(), 1 - x.ravel() ** 2], 1)
  pairs = symmetry.mirror_pairs(vertices)
  assert len(pairs) == 4 * 5  # the midline column pairs with nothing
  np.testing.assert_allclose(vertices[pairs[:, 0], 0], -vertices[pairs[:, 1], 0])
  np.testing.assert_allclose(vertices[pairs[:, 0], 1:], vertices[pairs[:, 1], 1:])
