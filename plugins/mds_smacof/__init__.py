"""Built-in distfold plugin: mds_smacof."""
