"""POST /api/v1/auth/token/: DRF's token view with the login limits (marketplace.login_limits)."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.settings import api_settings

from .. import login_limits
from ..errors import ErrorCode


class LockedOut(exceptions.Throttled):
    default_code = ErrorCode.LOCKED_OUT
    default_detail = "Too many wrong passwords for this username; try again later."
    extra_detail_singular = extra_detail_plural = ""


class ObtainTokenView(ObtainAuthToken):
    throttle_classes = [login_limits.LoginRateThrottle]
    parser_classes = api_settings.DEFAULT_PARSER_CLASSES  # DRF's view names plain JSONParser

    def post(self, request, *args, **kwargs):
        username = request.data.get("username") if hasattr(request.data, "get") else None
        username = username if isinstance(username, str) else ""
        if login_limits.is_locked(username):
            raise LockedOut(wait=login_limits.lockout_seconds())
        try:
            response = super().post(request, *args, **kwargs)
        except exceptions.ValidationError:
            login_limits.record_failure(username)
            raise
        login_limits.record_success(username)
        return response


obtain_token = ObtainTokenView.as_view()
