"""``python -m scratchrnn`` is the ``scratchrnn`` command."""
import sys

from .launch import main

sys.exit(main())
