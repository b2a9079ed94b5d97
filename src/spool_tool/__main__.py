"""``python -m spool_tool``."""

import sys

from spool_tool.cli import main

sys.exit(main())
