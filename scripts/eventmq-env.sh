#!/usr/bin/env bash
# Installs EventMQ 0.3.13 from PyPI into .venv-eventmq (for the interop tests),
# with the dependency versions that work on Python 3.11, and prometheus_client
# (whose strict OpenMetrics parser reads the router's /metrics in the tests). Idempotent: does
# nothing when the environment is already complete. Prints the venv path.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-eventmq
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import eventmq, zmq, prometheus_client' 2>/dev/null; then
  echo "$PWD/$venv"
  exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  pyzmq==24.0.1 six monotonic==0.4 croniter==0.3.10 psutil==5.6.6 future==0.18.3 prometheus_client==0.21.1 >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps eventmq==0.3.13 >&2
"$venv/bin/python" -c 'import eventmq, zmq; print("eventmq", eventmq.__version__, "pyzmq", zmq.__version__)' >&2
echo "$PWD/$venv"
