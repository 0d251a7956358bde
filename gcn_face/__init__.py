"""GCN texture refinement (GCN Decoder, GCN Refiner, Combine Net), mesh sampling, losses.

Lands with the gcn_face issue; see docs/ and the issue tracker.
"""
