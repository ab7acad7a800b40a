"""Training data: building a dataset from structure files and reading it."""
