"""The driver on top of the stages: `python -m pipeline run-all` walks each family's run plan (core/plan.py)."""
