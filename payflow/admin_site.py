"""The admin site: Django's, with what the two roles need to find their pages (outside
the ``payflow.admin`` package, which registers the model admins on it).

- An auditor who logs in without asking for a page lands on the auditors' pages
  (``/audit/``), not on the admin index; an operator (or a user with both roles) lands on
  the admin as before.
- Every admin page links to ``/audit/`` for users with the auditor role (the header's
  user links, ``templates/admin/base_site.html``).
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from payflow import roles


class PayFlowAdminSite(admin.AdminSite):
    site_header = "PayFlow operations"
    site_title = "PayFlow admin"
    # The lists need the width (1366 px screens): the index and breadcrumbs lead everywhere.
    enable_nav_sidebar = False
    site_url = None  # no public site: the header links to the admin and the audit pages

    def each_context(self, request: HttpRequest) -> dict:
        context = super().each_context(request)
        context["audit_url"] = (
            reverse("audit:dashboard") if roles.has_role(request.user, roles.AUDITOR) else ""
        )
        return context

    def get_urls(self):
        return [
            path("dashboard/", self.admin_view(self.dashboard_view), name="dashboard"),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """The last 24 hours at a glance (``payflow.admin.dashboard``), for anyone who may
        read transactions (operators, auditors)."""
        # payflow.admin registers its model admins on this site: imported at the top, it
        # would ask for the site while the site is being made
        from payflow.admin.dashboard import (
            BAR_HEIGHT,
            BAR_WIDTH,
            CHART_WIDTH,
            dashboard,
        )

        if not request.user.has_perm("ledger.view_transaction"):
            raise PermissionDenied
        context = {
            **self.each_context(request),
            "title": "Dashboard: the last 24 hours",
            "board": dashboard(),
            "bar_width": BAR_WIDTH,
            "bar_height": BAR_HEIGHT,
            "chart_width": CHART_WIDTH,
        }
        return TemplateResponse(request, "admin/payflow/dashboard.html", context)

    def login(self, request: HttpRequest, extra_context: dict | None = None):
        response = super().login(request, extra_context)
        asked = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME)
        if (
            request.method == "POST"
            and isinstance(response, HttpResponseRedirect)
            and asked in (None, "", reverse("admin:index", current_app=self.name))
            and lands_on_audit(request.user)
        ):
            return HttpResponseRedirect(reverse("audit:dashboard"))
        return response


def lands_on_audit(user) -> bool:
    """An auditor who is not also an operator (nor a superuser) starts on ``/audit/``."""
    return (
        roles.has_role(user, roles.AUDITOR)
        and not user.is_superuser
        and not roles.has_role(user, roles.OPERATOR)
    )
