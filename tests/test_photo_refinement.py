"""Per-photo refinement and its held-out protocol: the held-out pixels are a seeded 20 % of
the skin, their values reach nothing but their own L1 (bit-identical coefficients and
textures when they change), and refinement lowers the L1 there below the coarse texture's."""

import numpy as np
import pytest

from gcn_face import photo_refinement, reconstruction, synthetic_data


def test_holdout_mask_is_a_seeded_fifth_of_the_skin():
  skin = np.zeros((224, 224), bool)
  skin[40:190, 50:170] = True
  a = photo_refinement.holdout_mask(skin, "photo_a")
  assert not np.any(a & ~skin)
  assert a.sum() / skin.sum() == pytest.approx(0.2, abs=0.01)
  np.testing.assert_array_equal(a, photo_refinement.holdout_mask(skin, "photo_a"))
  assert np.mean(a == photo_refinement.holdout_mask(skin, "photo_b")) < 0.99
  assert np.mean(a == photo_refinement.holdout_mask(skin, "photo_a", seed=1)) < 0.99
  assert not photo_refinement.holdout_mask(skin, "photo_a", fraction=0.0).any()
  with pytest.raises(ValueError, match="held-out fraction"):
    photo_refinement.holdout_mask(skin, "x", fraction=1.0)


def test_fill_holdout_hides_the_held_out_values():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
  holdout = rng.uniform(size=(64, 64)) < 0.3
  holdout[10:20, 10:20] = True  # a block: filled from farther out
  filled = photo_refinement.fill_holdout(image, holdout)
  np.testing.assert_array_equal(filled[~holdout], image[~holdout])
  other = image.copy()
  other[holdout] = 255 - other[holdout]
  np.testing.assert_array_equal(photo_refinement.fill_holdout(other, holdout), filled)
  # A filled pixel is the mean of its seen 3 x 3 neighbours (where it has some).
  i, j = next((i, j) for i, j in np.argwhere(holdout)
              if 0 < i < 63 and 0 < j < 63 and (~holdout[i - 1:i + 2, j - 1:j + 2]).any())
  window = ~holdout[i - 1:i + 2, j - 1:j + 2]
  expected = image[i - 1:i + 2, j - 1:j + 2][window].astype(np.float64).mean(0)
  np.testing.assert_allclose(filled[i, j], np.round(expected), atol=0.5)


def test_edges():
  edges = photo_refinement.edges(np.array([[0, 1, 2], [2, 1, 3]]))
  np.testing.assert_array_equal(edges, [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]])


@pytest.fixture(scope="module")
def synthetic_photo(synthetic_model):
  face = synthetic_data.SyntheticRenderer(synthetic_model).render([3])[0]
  return {"image": face["image"], "mask": face["mask"].astype(bool),
          "landmarks": face["landmarks"], "landmarks68": face["landmarks68"],
          "photo": face["image"], "transform": None}


def test_held_out_values_reach_nothing_and_refinement_beats_coarse(synthetic_model,
                                                                   synthetic_photo):
  from deep3dface import fitting  # pylint: disable=g-import-not-at-top
  config = photo_refinement.RefineConfig(steps=25, identity=0.0)
  rec = reconstruction.Reconstructor(synthetic_model, fit_config=fitting.FitConfig(60, 15),
                                     refine_config=config)
  first = rec._reconstruct(synthetic_photo, "face.png", "face")  # pylint: disable=protected-access
  holdout = first.holdout & first.region
  assert holdout.sum() > 0.15 * first.region.sum()
  changed = dict(synthetic_photo, image=synthetic_photo["image"].copy())
  changed["image"][first.holdout] = 255 - changed["image"][first.holdout]
  second = rec._reconstruct(changed, "face.png", "face")  # pylint: disable=protected-access
  np.testing.assert_array_equal(first.coeff, second.coeff)
  for name in ("coarse", "refined"):
    np.testing.assert_array_equal(first.albedos[name], second.albedos[name])
  l1, l1_changed = first.l1(), second.l1()
  assert l1_changed["coarse"]["heldout"] > 2 * l1["coarse"]["heldout"]  # measured on the truth
  assert l1["refined"]["heldout"] < 0.8 * l1["coarse"]["heldout"], l1
  assert l1["refined"]["region"] < l1["refined"]["heldout"] + 1.0
  assert set(first.seconds) == {"coefficients", "textures", "refine", "total"}
