from django.urls import path

from audit import logviews, views

app_name = "audit"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("log/checkpoint", logviews.checkpoint_latest, name="log_checkpoint"),
    path("log/checkpoint/<int:size>", logviews.checkpoint_at, name="log_checkpoint_at"),
    path("log/proof/consistency", logviews.consistency, name="log_consistency"),
    path("log/proof/inclusion", logviews.inclusion, name="log_inclusion"),
    path("log/cosignature", logviews.cosignature, name="log_cosignature"),
    path("verifications", views.verification_new, name="verification_new"),
    path("verifications/<int:run_id>", views.verification, name="verification"),
    path("records/<str:object_type>/<str:object_id>", views.record, name="record"),
    path("records/<str:public_id>", views.record_by_public_id, name="record_by_public_id"),
    path("search", views.search_view, name="search"),
    path("checkpoints", views.checkpoints, name="checkpoints"),
    path("checkpoints/<int:size>.txt", views.checkpoint_download, name="checkpoint_download"),
    path("log.vkey", views.public_key, name="public_key"),
    path("export", views.export, name="export"),
    path("segments/<int:segment_id>/check", views.segment_check_view, name="segment_check"),
    path("retention/<int:purge_id>.json", views.retention_record, name="retention_record"),
]
