"""The ``distfold`` command line (click). Commands are imported lazily."""
