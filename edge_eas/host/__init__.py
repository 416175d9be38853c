"""Host-only code (needs the `host` extra): training, the bundle writer, evaluation, the quick
start, targets and the host's paths. Never shipped to run on a device."""
