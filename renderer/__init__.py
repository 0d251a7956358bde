"""Differentiable triangle rasterizer for TensorFlow 2 (tf_mesh_renderer semantics).

Public API:
  rasterize, interpolate            low-level primitives (C++ ops with gradients)
  rasterize_triangles               tf_mesh_renderer's rasterize + interpolate
  mesh_renderer, phong_shader       tf_mesh_renderer's Phong renderer
  camera_utils                      look_at, perspective, euler_matrices,
                                    transform_homogeneous
  split_channels                    RGB / alpha of a render, with a fast gradient
"""

from renderer import camera_utils
from renderer.channels import split_channels
from renderer.mesh_renderer import mesh_renderer, phong_shader
from renderer.rasterize import EMPTY_TRIANGLE_ID, RasterOutput, interpolate, rasterize
from renderer.rasterize_triangles import rasterize_triangles

__all__ = [
    "EMPTY_TRIANGLE_ID", "RasterOutput", "camera_utils", "interpolate", "mesh_renderer",
    "phong_shader", "rasterize", "rasterize_triangles", "split_channels",
]
