"""Orchestration above the host, remote and runtime layers: the quick start's whole loop."""
