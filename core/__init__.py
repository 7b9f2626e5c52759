"""Contracts every stage shares (argparse types, atomic writes, directory locks, JSON files).

This is the bottom layer: it imports no other project package, so any stage may import it.
"""
