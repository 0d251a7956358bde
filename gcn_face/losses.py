"""The training objective (SPEC 6.2-6.3): the release's terms, the paper's pixel loss, WGAN-GP.

Colours are on the [-1, 1] scale unless a name says otherwise. Every term is a
scalar float32 and stays finite for empty masks.
"""

import tensorflow as tf

LAMBDA_ID = 0.2
LAMBDA_SYM = 0.5
LAMBDA_VAR = 0.01
INVISIBLE_WEIGHT = 0.3  # L_proj's pull of invisible vertices toward the coarse colour
GP_WEIGHT = 10.0  # WGAN-GP
ADV_LAMBDA = 1e-3  # --adv_lambda
SYM_EPSILON = 3 * 1e-16  # inside the release's sqrt
COSINE_EPSILON = 1e-8
OBJECTIVES = ("release", "paper")


def refine_loss(fine_albedo, coarse_albedo):
  """L_refine: mean |T' - T_pca| over B, N, 3."""
  return tf.reduce_mean(tf.abs(fine_albedo - coarse_albedo))


def invisible_vertex_loss(fine_colors, coarse_colors, visibility):
  """0.3 mean |(1 - vis)(C' - C_pca)|: invisible vertices pulled toward the coarse colour."""
  invisible = 1.0 - visibility[..., None]
  return INVISIBLE_WEIGHT * tf.reduce_mean(tf.abs(invisible * (fine_colors - coarse_colors)))


def projection_loss(fine_colors, image_colors, coarse_colors, visibility):
  """L_proj: mean |vis (C' - P)| + 0.3 mean |(1 - vis)(C' - C_pca)| (means over B, N, 3).

  Args:
    fine_colors, coarse_colors: `[B, N, 3]` SH-lit albedos; image_colors: `[B, N, 3]`
    photo colours under the vertices; visibility: `[B, N]` in [0, 1].
  """
  visible = tf.reduce_mean(tf.abs(visibility[..., None] * (fine_colors - image_colors)))
  return visible + invisible_vertex_loss(fine_colors, coarse_colors, visibility)


def identity_loss(features_input, features_output):
  """L_id: 1 - mean_b cos(phi(I), phi(O')), +1e-8 in the denominator."""
  dot = tf.reduce_sum(features_input * features_output, -1)
  norms = tf.norm(features_input, axis=-1) * tf.norm(features_output, axis=-1)
  return 1.0 - tf.reduce_mean(dot / (norms + COSINE_EPSILON))


def symmetry_loss(fine_albedo, pairs):
  """L_sym: mean over B and pairs of sqrt(sum_c (T'_l - T'_r)^2 + 3e-16)."""
  if pairs.shape[0] == 0:
    return tf.constant(0.0)
  left = tf.gather(fine_albedo, pairs[:, 0], axis=1)
  right = tf.gather(fine_albedo, pairs[:, 1], axis=1)
  return tf.reduce_mean(tf.sqrt(tf.reduce_sum(tf.square(left - right), -1) + SYM_EPSILON))


def skin_variance_loss(fine_albedo, skin_indices):
  """L_var: mean over B and channels of the variance of T' over the skin vertices."""
  skin = tf.gather(fine_albedo, skin_indices, axis=1)
  return tf.reduce_mean(tf.math.reduce_variance(skin, axis=1))


def masked_l1(rendered, image, mask):
  """sum |R - I| m / sum m over `[B, H, W, 3]` images and `[B, H, W]` masks (0 when empty);
  the numerator sums the 3 channels (pca_loss / gcn_loss, the paper's pixel loss)."""
  numerator = tf.reduce_sum(tf.abs(rendered - image) * mask[..., None])
  return tf.math.divide_no_nan(numerator, tf.reduce_sum(mask))


def composite(render_255, image_255, render_mask):
  """O' = R' m_r + I (1 - m_r) on the 0-255 scale (`[B, H, W, 3]`, mask `[B, H, W]`)."""
  m = render_mask[..., None]
  return render_255 * m + image_255 * (1.0 - m)


def objective(terms, lambda_ren, lambda_ref, regularization, kind="release",
              lambda_sym=LAMBDA_SYM, lambda_id=LAMBDA_ID):
  """The generator's loss from the `terms` dict (refine, proj, id, sym, var, pixel).

  release: lambda_ref L_refine + lambda_ren (L_proj + 0.2 L_id + 0.5 L_sym + 0.01 L_var) + Reg
           (`lambda_sym` and `lambda_id` replace the 0.5 and the 0.2).
  paper:   the image-space pixel loss (gcn_loss) replaces L_proj's visible-vertex part,
           the 0.3 invisible-vertex pull stays.
  """
  if kind not in OBJECTIVES:
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {kind!r}")
  data = terms["proj"] if kind == "release" else terms["pixel"] + terms["proj_invisible"]
  rendered = (data + lambda_id * terms["id"] + lambda_sym * terms["sym"] +
              LAMBDA_VAR * terms["var"])
  return lambda_ref * terms["refine"] + lambda_ren * rendered + regularization


def interpolates(real, fake, seed, per_sample=True, replica=(0, 1)):
  """x^ = eps real + (1 - eps) fake with eps ~ U(0, 1) per sample (or one per batch).

  replica: (index, count) of a data-parallel replica holding one of `count` equal slices of
  the global batch: it draws the global batch's eps and uses its slice, so any number of
  replicas interpolates exactly as one device does.
  """
  index, count = replica
  if per_sample:
    size = tf.shape(real)[0]
    eps = tf.random.stateless_uniform([size * count, 1, 1, 1], seed)[index * size:][:size]
  else:
    eps = tf.random.stateless_uniform([1, 1, 1, 1], seed)
  return eps * real + (1.0 - eps) * fake


def critic_loss(critic, real, fake, seed, per_sample=True, adv_lambda=ADV_LAMBDA,
                replica=(0, 1)):
  """L_D = lambda_adv (mean D(fake) - mean D(real) + GP), GP = mean 10 (|grad D(x^)| - 1)^2.

  Returns (L_D, {"critic_real", "critic_fake", "gradient_penalty"}).
  """
  mixed = interpolates(real, fake, seed, per_sample, replica)
  with tf.GradientTape() as tape:
    tape.watch(mixed)
    d_mixed = critic(mixed, training=True)
  grad = tape.gradient(d_mixed, mixed)
  norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3]) + 1e-12)
  penalty = tf.reduce_mean(GP_WEIGHT * tf.square(norm - 1.0))
  d_real = tf.reduce_mean(critic(real, training=True))
  d_fake = tf.reduce_mean(critic(fake, training=True))
  loss = adv_lambda * (d_fake - d_real + penalty)
  return loss, {"critic_real": d_real, "critic_fake": d_fake, "gradient_penalty": penalty}


def generator_adversarial_loss(critic, fake, adv_lambda=ADV_LAMBDA):
  """L_G = -lambda_adv mean D(fake)."""
  return -adv_lambda * tf.reduce_mean(critic(fake, training=True))
