"""Deep3DFaceReconstruction's coarse stage: BFM09 front model, alignment, R-Net, face formation.

Lands with the deep3dface issue; see docs/ and the issue tracker.
"""
