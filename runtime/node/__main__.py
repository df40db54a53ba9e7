"""``python -m olvf.runtime.node`` is ``olvf-serve``."""

import sys

from olvf.runtime.node.cli import main

sys.exit(main())
