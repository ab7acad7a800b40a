"""Distance geometry (numpy only): matrix checks, stress, the classical-MDS start, handedness, superposition."""
