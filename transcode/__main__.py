"""`python -m transcode` runs the command line."""

from transcode.cli import run

run()
