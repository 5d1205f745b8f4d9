"""The Celery application. Workers consume queue ``cpu`` by default; GPU nodes consume ``gpu``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

app = Celery("governing_llms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
