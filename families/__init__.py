"""Model families, one folder each (the layout of the architecture issue).

A family folder holds what is specific to one model family: its PyTorch module, checkpoint I/O, labels,
feature configuration and the recipe the export stage uses. Stages reach a family through its registry
entry (families/registry.py FAMILIES for now), not by importing another stage's model code.
"""
