"""Small synthetic meshes shared by the mesh-sampling and GCN tests."""

import numpy as np


def wavy_grid(n, seed=0, jitter=0.2):
  """A jittered n x n height-field patch: no exact cost ties."""
  rng = np.random.default_rng(seed)
  x, y = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
  x = x + rng.uniform(-jitter, jitter, x.shape) / n
  y = y + rng.uniform(-jitter, jitter, y.shape) / n
  z = 0.3 * np.sin(2 * x) * np.cos(3 * y) + 0.01 * rng.normal(size=x.shape)
  v = np.stack([x.ravel(), y.ravel(), z.ravel()], 1)
  i = np.arange(n * n).reshape(n, n)
  a, b, c, d = i[:-1, :-1].ravel(), i[:-1, 1:].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel()
  return v, np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]).astype(np.int32)
