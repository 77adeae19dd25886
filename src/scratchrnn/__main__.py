"""``python -m scratchrnn`` is the ``scratchrnn`` command."""
import sys

from .cli import main

sys.exit(main())
