"""`python -m transcode` runs the command line."""

import sys

from transcode.cli import main

sys.exit(main())
