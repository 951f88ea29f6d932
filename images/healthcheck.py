#!/usr/bin/env python3
"""Container HEALTHCHECK: exit 0 when GET http://127.0.0.1:<port><path> answers 2xx.

Usage: healthcheck PORT PATH [PORT_ENV]; PORT_ENV names the variable that overrides the port
(MLSERVER_HTTP_PORT, PREDICTIVE_UNIT_HTTP_SERVICE_PORT), so the check follows the server.
Standard library only: it runs in every image, torch or not.
"""

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: healthcheck PORT PATH [PORT_ENV]", file=sys.stderr)
        return 2
    port = os.environ.get(argv[2], argv[0]) if len(argv) == 3 else argv[0]
    url = f"http://127.0.0.1:{port}{argv[1]}"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
