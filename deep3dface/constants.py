"""Constants of Deep3DFaceReconstruction's coarse stage, each named once with its source.

SPEC = ../shared/docs/SPEC.md (the original system); section numbers in comments.
"""

import math

# Coefficient layout of the R-Net output (SPEC 2.3): identity, expression,
# albedo, Euler angles, SH lighting (3 x 9), translation.
ID_DIM = 80
EXP_DIM = 64
TEX_DIM = 80
ANGLE_DIM = 3
GAMMA_DIM = 27
TRANS_DIM = 3
COEFF_DIM = ID_DIM + EXP_DIM + TEX_DIM + ANGLE_DIM + GAMMA_DIM + TRANS_DIM  # 257
COEFF_SPLITS = (ID_DIM, EXP_DIM, TEX_DIM, ANGLE_DIM, GAMMA_DIM, TRANS_DIM)

# Camera (SPEC 2.9): pinhole at (0, 0, 10) dm looking down -z, focal 1015 px,
# principal point (112, 112) on a 224 x 224 image.
IMAGE_SIZE = 224
FOCAL = 1015.0
PRINCIPAL_POINT = 112.0
CAMERA_DISTANCE = 10.0  # dm
FOV_Y_DEGREES = math.degrees(2.0 * math.atan(PRINCIPAL_POINT / FOCAL))  # 12.5936
NEAR_CLIP = 0.01  # Deep3D's renderer (the GCN release uses 0.001)
FAR_CLIP = 50.0  # Deep3D's renderer (the GCN release uses 30)

# Spherical-harmonics lighting (SPEC 2.8).
SH_A = (math.pi, 2.0 * math.pi / math.sqrt(3.0), 2.0 * math.pi / math.sqrt(8.0))
SH_C = (1.0 / math.sqrt(4.0 * math.pi), math.sqrt(3.0) / math.sqrt(4.0 * math.pi),
        3.0 * math.sqrt(5.0) / math.sqrt(12.0 * math.pi))
SH_AMBIENT_PRIOR = 0.8  # added to each channel's first SH coefficient

# 5-point alignment (SPEC 2.1): one unit of the standard 3-D landmarks is
# ALIGN_SCALE pixels in the 224 x 224 crop.
ALIGN_SCALE = 102.0
# The 5 alignment targets from the 68 standard 3-D landmarks
# (similarity_Lm3D_all.mat), 1-based as in SPEC 2.1: eyes = means of the two
# eye corners, nose tip, mouth corners; image-left first.
STD_LANDMARK_GROUPS_1BASED = ((37, 40), (43, 46), (31,), (49,), (55,))
# Those five targets (SPEC 2.1 table): x right, y up, z to the camera, dm.
STANDARD_FIVE_POINTS = (
    (-0.31149, 0.29036, 0.13378),
    (0.30980, 0.28972, 0.13180),
    (0.00325, -0.04618, 0.55244),
    (-0.25217, -0.38134, 0.22406),
    (0.24847, -0.38128, 0.22236),
)
# The 5 points from 68 detected landmarks (dlib's 68-point layout, 0-based):
# eye centres = means of the six eye-contour points, nose tip, mouth corners.
DETECTED_LANDMARK_GROUPS_0BASED = (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,),
                                   (54,))

# BFM09 front face (SPEC 2.4).
BFM_VERTICES = 35709
BFM_TRIANGLES = 70789
NUM_KEYPOINTS = 68
POINT_BUF_WIDTH = 8  # incident triangles listed per vertex
MESH_UNIT_PER_MICRON = 1e-5  # raw BFM09 shapes are in micrometres; the model uses dm
METRES_PER_UNIT = 0.1  # the model's unit (dm) in metres, glTF's unit

# Where each group lies in the 257 coefficients (0-based slices, SPEC 2.3).
_COEFF_BOUNDS = [sum(COEFF_SPLITS[:i]) for i in range(len(COEFF_SPLITS) + 1)]
COEFF_SLICES = {name: slice(_COEFF_BOUNDS[i], _COEFF_BOUNDS[i + 1]) for i, name in enumerate(
    ("identity", "expression", "albedo", "angles", "gamma", "translation"))}
