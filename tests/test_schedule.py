"""The loss-weight and learning-rate schedule in steps (gcn_face.schedule), against the
release's per-epoch formulas written out by hand."""

import numpy as np
import pytest
import tensorflow as tf

from gcn_face import schedule


@pytest.mark.parametrize("epoch,expected", [
    (0, (0.0, 1.0)), (1, (0.2, 0.8)), (2, (0.4, 0.6)), (3, (0.6, 0.4)), (4, (0.8, 0.2)),
    (5, (1.0, 0.2)), (49, (1.0, 0.2)),
])
def test_release_weights_per_epoch(epoch, expected):
  np.testing.assert_allclose(schedule.loss_weights(epoch), expected, atol=1e-12)


@pytest.mark.parametrize("epoch_steps,start,step,epoch", [
    (16, 0, 0, 0), (16, 0, 15, 0), (16, 0, 16, 1), (16, 0, 80, 5), (1000, 0, 999, 0),
    (1000, 0, 2500, 2), (1000, 5, 0, 5), (1000, 2, 1500, 3),
    (schedule.RELEASE_EPOCH_STEPS, 0, schedule.RELEASE_EPOCH_STEPS * 3 - 1, 2),
])
def test_schedule_epoch_of_a_step(epoch_steps, start, step, epoch):
  s = schedule.Schedule(epoch_steps, start)
  assert s.epoch(step) == epoch
  assert s.weights(step) == schedule.loss_weights(epoch)


def test_learning_rate_decays_per_schedule_epoch_from_step_zero():
  s = schedule.Schedule(100, start_epoch=5, lr=1e-3)
  for step, decays in [(0, 0), (99, 0), (100, 1), (250, 2), (10_000, 100)]:
    assert s.learning_rate(step) == pytest.approx(1e-3 * 0.98 ** decays, rel=1e-12)
    assert float(s.learning_rate(tf.constant(step, tf.int64))) == pytest.approx(
        1e-3 * 0.98 ** decays, rel=1e-5)


def test_release_epoch_is_celeba_in_batches_of_four():
  assert schedule.RELEASE_EPOCH_STEPS == (202_599 - 8_192) // 4 == 48_601


def test_step_learning_rate_reads_the_trainer_step():
  step = tf.Variable(0, dtype=tf.int64)
  rate = schedule.StepLearningRate(schedule.Schedule(10, lr=1.0, lr_decay=0.5), step)
  optimizer = tf.keras.optimizers.Adam(rate)
  variable = tf.Variable(1.0)
  for _ in range(5):  # five "critic" updates at generator step 0 do not decay the rate
    optimizer.apply_gradients([(tf.constant(1.0), variable)])
  assert float(rate(optimizer.iterations)) == 1.0
  step.assign(25)
  assert float(rate(optimizer.iterations)) == 0.25


@pytest.mark.parametrize("steps,start", [(0, 0), (10, -1)])
def test_bad_schedules(steps, start):
  with pytest.raises(ValueError, match="schedule"):
    schedule.Schedule(steps, start)


@pytest.mark.parametrize("epoch_steps,start,first", [(16, 0, 16), (1000, 0, 1000), (100, 1, 0),
                                                     (100, 5, 0)])
def test_first_render_step(epoch_steps, start, first):
  s = schedule.Schedule(epoch_steps, start)
  assert s.first_render_step(1e-5) == first
  assert s.weights(first)[0] > 1e-5
  assert first == 0 or s.weights(first - 1)[0] <= 1e-5
