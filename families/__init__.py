"""Model families, one folder each (docs/families.md).

A family folder holds what is specific to one model family: its PyTorch module, checkpoint I/O, labels,
features and the recipe the export stage uses, declared by one `FAMILY` (core.family.Family) in its
__init__.py. Stages reach a family only through families/registry.py (get_family), never by name.
"""
