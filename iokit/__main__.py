"""``python -m iokit`` runs the ``iokit`` command."""

import sys

from .cli import main

sys.exit(main())
