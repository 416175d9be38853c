"""`python -m edge_eas.runtime`: the device agent (edge_eas/runtime/agent/main.py)."""

import sys

from edge_eas.runtime.agent.main import main

if __name__ == "__main__":
    sys.exit(main())
