from django.contrib import admin
from django.urls import include, path

from payflow import health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("v1/", include("payflow.api.urls")),
    path("audit/", include("audit.urls")),
]

handler400 = "payflow.api.errors.handler400"
handler403 = "payflow.api.errors.handler403"
handler404 = "payflow.api.errors.handler404"
handler500 = "payflow.api.errors.handler500"
