"""Host-side plumbing every host layer uses: where edge_eas keeps its files (paths), the
console (rich progress, --json output), atomic writes, TOML reading, and the optional-package
checks of the CLI (requirements). Imports no other edge_eas layer but `errors`."""
