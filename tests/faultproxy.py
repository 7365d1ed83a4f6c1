"""The suite's fault-injecting proxy (helper module, not tests): it lives in transcode.testing.faultproxy, where the
benchmark tools reach it too."""

from transcode.testing.faultproxy import *  # noqa: F401,F403
from transcode.testing.faultproxy import __all__  # noqa: F401
