"""A loopback proxy that adds a fixed delay to every request in front of an S3 endpoint (e.g. the Ceph RADOS Gateway of
tools/ceph_rgw_up.sh), so that benchmarks meet the per-request latency of a real network.

    python tools/latency_proxy.py --target http://127.0.0.1:7480 --delay-ms 20

prints `PROXY=http://127.0.0.1:PORT` and serves until interrupted (Ctrl-C, SIGTERM). It listens on 127.0.0.1 only.
The proxy is transcode.testing.faultproxy.FaultyProxy with nothing but its `delay` set."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from transcode.testing.faultproxy import FaultyProxy


def latency_proxy(target: str, delay_ms: float) -> FaultyProxy:
    """A proxy on 127.0.0.1 forwarding to `target` after `delay_ms` milliseconds per request (close it when done)."""
    if delay_ms < 0:
        raise ValueError(f"a delay cannot be negative ({delay_ms} ms)")
    return FaultyProxy(target, delay=delay_ms / 1000.0)


def main(argv: list[str] | None = None) -> int:
    """Run the proxy until interrupted."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, help="the S3 endpoint to forward to, e.g. http://127.0.0.1:7480")
    ap.add_argument("--delay-ms", type=float, default=20.0, help="milliseconds added per request (default: 20)")
    args = ap.parse_args(argv)
    proxy = latency_proxy(args.target, args.delay_ms)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"PROXY={proxy.url}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
