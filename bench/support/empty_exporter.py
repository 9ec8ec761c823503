"""The scrape baseline: prometheus_client's own exporter over an EMPTY registry.

    python -m bench.support.empty_exporter PORT

Same server stack as the worker's /metrics (wsgiref ThreadingWSGIServer), nothing to collect:
what any scrape costs before a single metric is read.
"""

from __future__ import annotations

import sys
import time

from prometheus_client import CollectorRegistry, start_http_server

if __name__ == "__main__":
    start_http_server(int(sys.argv[1]), addr="127.0.0.1", registry=CollectorRegistry())
    print("empty exporter ready", flush=True)
    while True:
        time.sleep(3600)
