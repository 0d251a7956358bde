"""GCN texture refinement (SPEC 3, 4): CoMA mesh sampling, Chebyshev graph convolutions,
the GCN Decoder, GCN Refiner and Combine Net, the WGAN-GP critic and the identity networks.

See docs/gcn_face.md and docs/identity.md.
"""
