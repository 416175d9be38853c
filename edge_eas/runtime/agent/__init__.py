"""The device agent: `python -m edge_eas.runtime` (main.py), its JSON-lines messages and output
stream, and block profiling for the cost model."""
