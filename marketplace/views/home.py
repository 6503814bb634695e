"""Where a user lands after logging in (LOGIN_REDIRECT_URL): their role's home (marketplace.navigation)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect

from .. import navigation


@login_required
def home(request):
    """LOGIN_REDIRECT_URL: send a user who logged in without a `next` to their role's home."""
    return redirect(navigation.home_url(request.user))
