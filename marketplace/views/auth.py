"""The login page, with the same limits as the token endpoint (marketplace.login_limits)."""

from __future__ import annotations

import math

from django.contrib.auth import views as auth_views

from .. import login_limits


class LoginView(auth_views.LoginView):
    """Django's LoginView; refuses with 429 when the address or the username is over its limit."""

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        wait = login_limits.address_wait(request)
        if wait is None and login_limits.is_locked(username):
            wait = login_limits.lockout_seconds()
        if wait is not None:
            form = self.get_form()
            response = self.render_to_response(self.get_context_data(form=form, throttled=True))
            response.status_code = 429
            response["Retry-After"] = str(math.ceil(wait))
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        login_limits.record_failure(form.data.get("username", ""))
        return super().form_invalid(form)

    def form_valid(self, form):
        login_limits.record_success(form.get_user().get_username())
        return super().form_valid(form)
