"""The training step on a fixed synthetic batch: the loss falls, empty masks stay finite, the
critic step runs; the synthetic data generator and the record format."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from deep3dface import face_model
from gcn_face import mesh_sampling, records, refinement, synthetic_data, training
from gcn_face.identity import encoder


@pytest.fixture(scope="module")
def renderer(synthetic_model):
  return synthetic_data.SyntheticRenderer(synthetic_model)


@pytest.fixture(scope="module")
def faces(renderer):
  return renderer.render([11, 12])


@pytest.fixture(scope="module")
def batch(faces):
  return {"image": np.stack([f["image"] for f in faces]).astype(np.float32),
          "mask": np.stack([f["mask"] for f in faces]).astype(np.float32),
          "coeff": np.stack([f["coeff"] for f in faces]).astype(np.float32),
          "landmarks": np.stack([f["landmarks"] for f in faces]).astype(np.float32)}


@pytest.fixture(scope="module")
def module(synthetic_model, tmp_path_factory):
  keras.utils.set_random_seed(3)
  sampling = mesh_sampling.load_or_build(synthetic_model.mean_shape, synthetic_model.triangles,
                                         directory=str(tmp_path_factory.mktemp("sampling")))
  return refinement.TextureRefinement(face_model.FaceModel(synthetic_model), sampling,
                                      encoder.DlibEncoder())


def test_synthetic_faces(renderer, faces, synthetic_model):
  for face in faces:
    assert face["image"].shape == (224, 224, 3) and face["image"].dtype == np.uint8
    assert 0.05 < face["mask"].mean() < 0.9
    assert np.all((face["landmarks"] > 0) & (face["landmarks"] < 223))
    # The stored albedo coefficients are the PCA fit of the true albedo; the detail remains.
    part = synthetic_data.constants.COEFF_SLICES["albedo"]
    pca = (renderer.mean_tex + synthetic_model.tex_base @ face["coeff"][part]).reshape(-1, 3)
    residual = face["albedo"] - pca
    assert 2.0 < np.abs(residual).mean() < 60.0
    refit = renderer.pca_fit(pca)
    np.testing.assert_allclose(refit, face["coeff"][part], atol=1e-3)
  again = renderer.render([11])[0]
  np.testing.assert_array_equal(again["image"], faces[0]["image"])  # deterministic per seed


def test_occluders_leave_the_mask():
  rng = np.random.default_rng(0)
  image = np.full((224, 224, 3), 128, np.uint8)
  mask = np.ones((224, 224), bool)
  landmarks = np.stack([np.linspace(60, 160, 68), np.linspace(70, 170, 68)], 1)
  seen = set()
  for _ in range(30):
    drawn, cleared, kinds = synthetic_data._draw_occluders(image, mask, landmarks, rng)
    seen.update(kinds)
    changed = np.any(drawn != image, axis=-1)
    # Every drawn pixel leaves the mask; a pixel drawn in the background grey may look unchanged.
    assert not np.any(changed & cleared)
    assert np.sum(~cleared & ~changed) <= 0.01 * max(1, np.sum(~cleared))
  assert seen == {"hand", "glasses", "hair_band"}


def test_record_round_trip(faces):
  face = faces[0]
  data = records.encode_example("x", face["image"], face["mask"], face["coeff"],
                                face["landmarks"], face["landmarks68"], face["albedo"])
  out = records.decode_example(tf.constant(data), True, True)
  np.testing.assert_array_equal(out["image"].numpy(), face["image"])
  np.testing.assert_array_equal(out["mask"].numpy(), face["mask"])
  np.testing.assert_allclose(out["coeff"], face["coeff"], rtol=1e-6)
  np.testing.assert_array_equal(out["albedo"].numpy(), face["albedo"])
  with pytest.raises(ValueError, match="x: coefficients or landmarks contain NaN"):
    records.encode_example("x", face["image"], face["mask"], np.full(257, np.nan),
                           face["landmarks"])


def test_shard_writer_resumes(tmp_path, faces):
  data = records.encode_example("x", faces[0]["image"], faces[0]["mask"], faces[0]["coeff"],
                                faces[0]["landmarks"])
  writer = records.ShardWriter(str(tmp_path), "train", 2, {"a": 1})
  for _ in range(5):
    writer.write(data)
  writer._writer.close()  # killed: the third shard never completes
  resumed = records.ShardWriter(str(tmp_path), "train", 2, {"a": 1})
  assert resumed.next_index == 4
  resumed.write(data)
  resumed.close()
  files, count, _ = records.split_files(str(tmp_path), "train")
  assert count == 5 and len(files) == 3
  assert sum(1 for _ in records.raw_dataset(str(tmp_path), "train")) == 5


def test_steps_lower_the_loss_on_a_fixed_batch(module, synthetic_model, batch):
  trainer = training.Trainer(module, refinement.skin_indices(synthetic_model), 10,
                             training.Config())
  lambdas = (tf.constant(1.0), tf.constant(1.0))
  # generator_step returns the loss before its update: losses[1] is the loss after one step.
  # Adam's first steps are sign steps of size lr, so one step lowers the loss of this seeded
  # initialisation (by 5 %), not of every one; five lower it by more than 3 % for every seed
  # tried (0-4).
  losses = [float(trainer.generator_step(batch, *lambdas)["total"]) for _ in range(6)]
  assert np.all(np.isfinite(losses)) and losses[1] < losses[0], losses
  assert losses[-1] < 0.97 * losses[0], losses
  assert int(trainer.step.numpy()) == 6 and int(trainer.skipped_updates.numpy()) == 0


def test_empty_masks_give_finite_losses_and_gradients(module, synthetic_model, batch):
  trainer = training.Trainer(module, refinement.skin_indices(synthetic_model), 10,
                             training.Config())
  empty = dict(batch, mask=np.zeros_like(batch["mask"]))
  terms = trainer.generator_step(empty, tf.constant(1.0), tf.constant(0.2))
  assert all(np.isfinite(float(v)) for v in terms.values())
  assert float(terms["gcn_loss"]) == 0.0
  assert int(trainer.skipped_updates.numpy()) == 0
  assert all(np.all(np.isfinite(v.numpy())) for v in module.generator.trainable_variables)


def test_critic_step(module, synthetic_model, batch):
  trainer = training.Trainer(module, refinement.skin_indices(synthetic_model), 10,
                             training.Config(gan=True))
  before = [v.numpy().copy() for v in trainer.critic.trainable_variables]
  stats = trainer.critic_step(batch, tf.constant([2, 0]))
  assert all(np.isfinite(float(v)) for v in stats.values())
  assert float(stats["gradient_penalty"]) >= 0.0
  after = trainer.critic.trainable_variables
  assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, after))
  terms = trainer.generator_step(batch, tf.constant(1.0), tf.constant(0.2))
  assert "adv" in terms and np.isfinite(float(terms["adv"]))
