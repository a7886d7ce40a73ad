from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from payflow.api import views, webhooks

urlpatterns = [
    path("ping", views.PingView.as_view()),
    path("tokens", views.TokenCreateView.as_view()),
    path("tokens/<str:token_id>", views.TokenDetailView.as_view()),
    path("payments", views.PaymentsView.as_view()),
    path("payments/<str:payment_id>", views.PaymentDetailView.as_view()),
    path("payments/<str:payment_id>/capture", views.PaymentCaptureView.as_view()),
    path("payments/<str:payment_id>/cancel", views.PaymentCancelView.as_view()),
    path("payments/<str:payment_id>/refunds", views.PaymentRefundsView.as_view()),
    path("refunds", views.RefundsView.as_view()),
    path("refunds/<str:refund_id>", views.RefundDetailView.as_view()),
    path("balance", views.BalanceView.as_view()),
    path("payouts", views.PayoutsView.as_view()),
    path("payouts/<str:payout_id>", views.PayoutDetailView.as_view()),
    path("chargebacks", views.ChargebacksView.as_view()),
    path("chargebacks/<str:chargeback_id>", views.ChargebackDetailView.as_view()),
    path("events", views.EventsView.as_view()),
    path("events/<str:event_id>", views.EventDetailView.as_view()),
    path("webhook_endpoints", webhooks.WebhookEndpointsView.as_view()),
    path("webhook_endpoints/<str:endpoint_id>", webhooks.WebhookEndpointDetailView.as_view()),
    path(
        "webhook_endpoints/<str:endpoint_id>/roll_secret",
        webhooks.WebhookEndpointRollSecretView.as_view(),
    ),
    path(
        "webhook_endpoints/<str:endpoint_id>/deliveries",
        webhooks.WebhookDeliveriesView.as_view(),
    ),
    path(
        "webhook_endpoints/<str:endpoint_id>/deliveries/<str:delivery_id>/resend",
        webhooks.WebhookDeliveryResendView.as_view(),
    ),
    path(
        "schema",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="schema",
    ),
    path(
        "docs",
        # The split view serves its start-up script as a file: no inline script, so the
        # page runs under the same Content-Security-Policy as the admin.
        SpectacularSwaggerSplitView.as_view(
            url_name="schema", authentication_classes=[], permission_classes=[]
        ),
        name="docs",
    ),
]
