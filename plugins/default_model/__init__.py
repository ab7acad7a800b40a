"""Built-in distfold plugin: default_model (the shipped trained model)."""
