#!/usr/bin/env bash
# Sets up and serves the demo on the embedded defaults: SQLite, in-process cache, no broker.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh requirements.txt
export DEBUG=${DEBUG:-1}
export PORT=${PORT:-8000}
.venv/bin/python manage.py migrate --noinput -v0
.venv/bin/python manage.py seed_demo
echo
echo "Serving on http://127.0.0.1:${PORT}  (admin: /admin/, API: /api/)"
echo "Try: curl -s -XPOST localhost:${PORT}/api/auth/login -H 'Content-Type: application/json' \\"
echo "       -d '{\"username\": \"user1\", \"password\": \"demo-pass-2026\"}'"
exec .venv/bin/python -m gunicorn project.wsgi --bind "127.0.0.1:${PORT}" --workers 1 --threads 4
