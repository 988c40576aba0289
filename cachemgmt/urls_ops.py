"""Operator routes outside the API: health probes and Prometheus metrics."""

from django.urls import path

from cachemgmt import apis
from cachemgmt.metrics import metrics_view

urlpatterns = [
    path("health", apis.HealthApi.as_view(), name="health"),
    path("health/live", apis.LiveApi.as_view(), name="health-live"),
    path("metrics", metrics_view, name="metrics"),
]
