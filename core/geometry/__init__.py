"""Distance geometry (numpy only): matrix checks, stress, the classical-MDS start, handedness,
superposition, and :func:`distfold.geometry.reconstruct.reconstruct`, the one call that runs a
reconstructor (input checked once before it, hand chosen once after it)."""
