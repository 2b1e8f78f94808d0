"""mocohd's version (pyproject.toml's `version`; tests/test_layout.py checks they agree), in the lowest
layer so that anything that records it (provenance, motion files, Hub cards, evaluation reports) imports it
at the top."""
__version__ = "0.1.0"
