"""``python -m coreaffect`` runs the command line."""

import sys

from coreaffect.cli import main

sys.exit(main())
