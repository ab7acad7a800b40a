"""An example third-party distfold plugin: a reconstructor, a normaliser, a backbone and a trained model."""
