"""``python -m iokit`` runs the ``iokit`` command."""

import sys

from iokit.app.cli import main

sys.exit(main())
