"""Built-in distfold plugin: mds_classical."""
