"""Built-in distfold plugin: distance heads (distogram, regression)."""
