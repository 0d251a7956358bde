"""Builds the CoMA mesh-sampling cache (levels, D/U matrices, Laplacians) for a template.

  python -m scripts.build_sampling --template=checkpoints/BFM/BFM_model_front.mat
  python -m scripts.build_sampling --template=face.obj --output_dir=data/params/face
  python -m scripts.build_sampling --template=synthetic   # the embedded default model

The cache (scipy.sparse .npz files, meshes, reference{i}.obj and a manifest
with hashes) is rebuilt only when missing, stale or corrupt, unless --force.
"""

import os
import time

from absl import app, flags, logging

from scripts.common import (SYNTHETIC_MODELS, fail, parse_flags, quiet_tensorflow, require_numbers,
                            user_path)

FLAGS = flags.FLAGS
flags.DEFINE_string("template", "checkpoints/BFM/BFM_model_front.mat",
                    "Template mesh: an OBJ file, a BFM_model_front.mat-schema file (meanshape, "
                    "tri), or 'synthetic' for the embedded synthetic morphable model.")
flags.DEFINE_string("output_dir", "data/params/bfm09_face", "Cache folder (the release's path).")
flags.DEFINE_list("factors", ["4", "4", "4", "4"], "Decimation factor per level (CoMA: 4,4,4,4).")
require_numbers("factors", low=1.0)
flags.DEFINE_bool("link_condition", True,
                  "Refuse collapses that make a level non-manifold; false = CoMA's exact algorithm.")
flags.DEFINE_bool("coma_edge_weights", False,
                  "CoMA's upsampling weights on edges (fit the fine vertex, not its closest point).")
flags.DEFINE_bool("force", False, "Rebuild even if the cache is current.")


def read_template(path):
  """(vertices [V, 3], faces [F, 3]) of an OBJ, a BFM-schema .mat, or 'synthetic'."""
  from deep3dface import bfm
  from gcn_face import mesh_io
  from scripts.common import load_face_model
  if path in SYNTHETIC_MODELS:
    model = load_face_model(path)
    return model.mean_shape, model.triangles
  if not os.path.isfile(path):
    raise ValueError(f"{path}: no such file (see checkpoints/README.md, or use --template=synthetic)")
  if path.lower().endswith(".obj"):
    return mesh_io.read_obj(path)
  model = bfm.load_model(path)
  return model.mean_shape, model.triangles


def main(argv):
  del argv
  from gcn_face import mesh_sampling
  template = FLAGS.template if FLAGS.template in SYNTHETIC_MODELS else user_path(FLAGS.template)
  try:
    factors = [float(f) for f in FLAGS.factors]
    vertices, faces = read_template(template)
  except ValueError as e:  # also bfm.ModelFormatError
    fail(str(e))
  output = user_path(FLAGS.output_dir)
  start = time.time()
  try:
    if FLAGS.force:
      mesh_sampling.remove_cache(output)
    sampling = mesh_sampling.load_or_build(vertices, faces, factors, output, name=template,
                                           coma_edge_weights=FLAGS.coma_edge_weights,
                                           link_condition=FLAGS.link_condition)
  except (mesh_sampling.MeshError, mesh_sampling.CacheError, OSError) as e:
    fail(str(e).splitlines()[0])
  logging.info("done in %.1f s", time.time() - start)
  print(f"Sampling cache {output}: level sizes {sampling.sizes}")


if __name__ == "__main__":
  quiet_tensorflow()
  app.run(main, flags_parser=parse_flags)
