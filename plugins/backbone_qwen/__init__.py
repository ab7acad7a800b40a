"""Built-in distfold plugin: backbone_qwen."""
