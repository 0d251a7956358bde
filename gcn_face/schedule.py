"""The loss-weight and learning-rate schedule (SPEC 6.2, 6.4), in generator steps.

The release counts epochs: at 0-based epoch e, lambda_ren = clip(0.2 e, 0, 1) and
lambda_ref = clip(1 - lambda_ren, 0.2, 1) (epoch 0 trains L_refine alone), and the
learning rate is lr * 0.98^e (a staircase every floor(N_train / B) steps). An epoch of
CelebA is RELEASE_EPOCH_STEPS generator steps; a small dataset's epoch is a few dozen,
so the same formulas per dataset epoch hand the image losses over before the GCN
could even copy the coarse texture, and decay the learning rate ~1000x faster.

`Schedule(epoch_steps, start_epoch)` counts schedule epochs of `epoch_steps` steps
(0: one pass over the training set, the release exactly) from `start_epoch` on
(5: the full weights lambda_ren = 1, lambda_ref = 0.2 from the first step, for a
generator that starts at the coarse texture and needs no refine-only warm-up). The
learning rate decays once per schedule epoch, counted from step 0.
"""

import dataclasses

import keras
import tensorflow as tf

RENDER_RAMP = 0.2  # lambda_ren grows by this per epoch (SPEC 6.2)
REFINE_FLOOR = 0.2  # lambda_ref never falls below this
LR_DECAY = 0.98  # per epoch, staircase (SPEC 6.4)
FULL_WEIGHT_EPOCH = 5  # the first epoch with lambda_ren = 1
# The release's epoch on CelebA: its 202,599 images less the 2 x 4,096 held out
# (SPEC 7), in batches of 4.
RELEASE_EPOCH_STEPS = (202_599 - 2 * 4_096) // 4


def loss_weights(epoch):
  """(lambda_ren, lambda_ref) of a 0-based (schedule) epoch, the release's formulas."""
  lambda_ren = min(max(RENDER_RAMP * epoch, 0.0), 1.0)
  return lambda_ren, min(max(1.0 - lambda_ren, REFINE_FLOOR), 1.0)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Loss weights and learning rate as functions of the generator step.

  Attributes:
    epoch_steps: generator steps per schedule epoch (>= 1).
    start_epoch: the schedule epoch at step 0 (>= 0) for the loss weights.
    lr: base learning rate; lr_decay: factor per schedule epoch.
  """
  epoch_steps: int
  start_epoch: int = 0
  lr: float = 1e-4
  lr_decay: float = LR_DECAY

  def __post_init__(self):
    if self.epoch_steps < 1 or self.start_epoch < 0:
      raise ValueError(f"schedule: epoch_steps must be >= 1 and start_epoch >= 0, got "
                       f"{self.epoch_steps} and {self.start_epoch}")

  def epoch(self, step):
    """The schedule epoch of a 0-based generator step (for the loss weights)."""
    return self.start_epoch + step // self.epoch_steps

  def weights(self, step):
    """(lambda_ren, lambda_ref) at a generator step."""
    return loss_weights(self.epoch(step))

  def first_render_step(self, min_lambda_ren):
    """The first generator step whose lambda_ren exceeds `min_lambda_ren` (< RENDER_RAMP)."""
    return 0 if self.weights(0)[0] > min_lambda_ren else (
        (1 - self.start_epoch) * self.epoch_steps)

  def learning_rate(self, step):
    """lr * lr_decay ** floor(step / epoch_steps); `step` a Python int or an int tensor."""
    if isinstance(step, int):
      return self.lr * self.lr_decay ** (step // self.epoch_steps)
    decays = tf.cast(step // self.epoch_steps, tf.float32)
    return self.lr * tf.pow(tf.constant(self.lr_decay, tf.float32), decays)


class StepLearningRate(keras.optimizers.schedules.LearningRateSchedule):
  """A Keras learning-rate schedule that reads the trainer's generator step instead of the
  optimiser's own update count, so the generator's and the critic's optimisers (5 critic
  updates per generator update) decay together, once per schedule epoch."""

  def __init__(self, schedule, step_variable):
    super().__init__()
    self.schedule, self.step_variable = schedule, step_variable

  def __call__(self, unused_iterations):
    return self.schedule.learning_rate(tf.convert_to_tensor(self.step_variable))

  def get_config(self):
    return dataclasses.asdict(self.schedule)
