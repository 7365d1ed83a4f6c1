"""The public Python API, one function per CLI verb, re-exported at the top of `transcode` (import those names
from there). Every flag `--some-name` of a verb is the keyword `some_name` of its function; every function
returns a report with `.ok` and `.to_json()` (the verb's `--json` document), prints nothing, and raises the typed
errors of `transcode.errors`."""
