"""The WGAN-GP critic of the release (SPEC 6.3), variables under "image_disc".

Input: images `[B, 224, 224, 3]` on the [-1, 1] scale; output: one score per
image `[B]`. conv1x1x16, then max-pool 2 and a 3x3 conv doubling the width
(32 .. 256) four times, max-pool to 7x7, conv3x3x512, and a 7x7 VALID conv to
one score. Hidden convs: stride 1 SAME + bias + BatchNorm (momentum 0.9,
epsilon 1e-3, no scale) + LeakyReLU(0.2); He-normal weights.
"""

import keras
import tensorflow as tf

from deep3dface import constants

HIDDEN_FILTERS = (16, 32, 64, 128, 256, 512)
LEAKY_SLOPE = 0.2
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-3


class ImageCritic(keras.Model):
  """WGAN critic D: `[B, 224, 224, 3]` in [-1, 1] -> `[B]` scores.

  synchronized: batch statistics over all replicas of a tf.distribute strategy, so that
  data-parallel training normalises over the global batch as one device does.
  """

  def __init__(self, name="image_disc", synchronized=False, **kwargs):
    super().__init__(name=name, **kwargs)
    self.blocks = []
    for i, filters in enumerate(HIDDEN_FILTERS):
      conv = keras.layers.Conv2D(filters, 1 if i == 0 else 3, padding="same",
                                 kernel_initializer=keras.initializers.HeNormal(), name=f"conv{i + 1}")
      norm = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, scale=False,
                                             synchronized=synchronized, name=f"bn{i + 1}")
      self.blocks.append((conv, norm))
    self.pool = keras.layers.MaxPooling2D(2)
    self.score = keras.layers.Conv2D(1, 7, padding="valid",
                                     kernel_initializer=keras.initializers.HeNormal(), name="score")

  def call(self, images, training=False):
    size = constants.IMAGE_SIZE
    if images.shape.rank != 4 or images.shape[1:] != (size, size, 3):
      raise ValueError(f"{self.name}: images must be [B, {size}, {size}, 3], got {images.shape}")
    x = images
    for i, (conv, norm) in enumerate(self.blocks):
      if i > 0:
        x = self.pool(x)
      x = tf.nn.leaky_relu(norm(conv(x), training=training), LEAKY_SLOPE)
    return tf.reshape(self.score(x), [-1])
