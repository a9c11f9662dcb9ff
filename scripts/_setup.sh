# Sourced by scripts/test, scripts/demo and scripts/bench: a .venv with the project and its dev
# dependencies, and a redis-server binary. Safe to run again: it only does what is missing.
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.drainctl-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "== installing drainctl and its dev dependencies into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev,rq,celery]'
  touch "$stamp"
fi
# redis-cli (redis-tools) creates the test Redis Cluster; redis-server --sentinel runs Sentinel.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing redis-server and redis-tools (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
  else
    echo "redis-server or redis-cli not found: install them (Debian/Ubuntu: sudo apt-get install -y redis-server redis-tools; macOS: brew install redis) and run this again." >&2
    exit 2
  fi
fi
