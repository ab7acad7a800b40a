"""An example third-party distfold plugin: a reconstructor and a normaliser."""
