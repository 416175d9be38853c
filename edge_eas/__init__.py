"""edge_eas: Elastic Architecture Search for edge devices."""

__version__ = "0.1.0"
