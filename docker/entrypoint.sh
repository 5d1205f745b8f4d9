#!/usr/bin/env sh
# web: wait for the database, migrate, serve with gunicorn (static files by whitenoise).
# worker QUEUES: a Celery worker; one job per child process; prefetch 1 (settings).
# flower: the Celery monitoring UI.
set -eu
wait_for_db() {
  python - <<'PY'
import time, django
from django.db import connection
django.setup()
for attempt in range(60):
    try:
        connection.ensure_connection()
        break
    except Exception as exc:  # the database container may still be starting
        print(f"waiting for the database ({exc.__class__.__name__})", flush=True)
        time.sleep(2)
else:
    raise SystemExit("database not reachable")
PY
}
export DJANGO_SETTINGS_MODULE=config.settings
role=${1:-web}
case "$role" in
  web)
    wait_for_db
    python manage.py migrate --noinput
    exec gunicorn -c config/gunicorn.py config.wsgi:application
    ;;
  worker)
    wait_for_db
    exec celery -A config worker -Q "${2:-cpu}" --concurrency "${WORKER_CONCURRENCY:-1}" \
      --max-tasks-per-child 1 --loglevel INFO
    ;;
  flower)
    exec celery -A config flower --port=5555
    ;;
  *)
    exec "$@"
    ;;
esac
