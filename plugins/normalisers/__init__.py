"""Built-in distfold plugin: normalisers (log1p, identity)."""
