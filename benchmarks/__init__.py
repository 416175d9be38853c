"""The benchmarks, each a module run from the repository root: `python -m benchmarks.NAME --help`.
They use edge_eas's public API only; results/ holds their JSON and figures, and
`python -m benchmarks.readme_results` turns those into the README's Results."""
