"""Built-in distfold plugin: backbone_esm (ESM-2 protein language models)."""
