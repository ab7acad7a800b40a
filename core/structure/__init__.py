"""Structures and sequences: PDB/mmCIF I/O, sequence rules, alignment, metrics, compare."""
