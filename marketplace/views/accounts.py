"""Sign-up pages: a buyer organisation registers itself and confirms its e-mail address."""

from __future__ import annotations

import logging

from django import forms
from django.contrib import messages
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from ..accounts import service as accounts
from ..errors import DomainError

log = logging.getLogger(__name__)

# Which form field a service error belongs to, so that it is shown next to it.
ERROR_FIELDS = {
    "invalid_name": "organization_name",
    "invalid_country": "country",
    "invalid_username": "username",
    "username_taken": "username",
    "invalid_email": "email",
    "email_taken": "email",
    "weak_password": "password",
}


class SignUpForm(forms.Form):
    organization_name = forms.CharField(label="Organisation", max_length=accounts.NAME_MAX)
    country = forms.CharField(
        label="Country (ISO code, optional)", max_length=2, required=False, help_text="e.g. DE"
    )
    username = forms.CharField(label="Username", max_length=accounts.USERNAME_MAX)
    email = forms.EmailField(label="Work e-mail", max_length=254)
    password = forms.CharField(label="Password", widget=forms.PasswordInput, max_length=128)
    password_again = forms.CharField(label="Password again", widget=forms.PasswordInput, max_length=128)

    def clean(self):
        data = super().clean()
        if data.get("password") and data.get("password") != data.get("password_again"):
            self.add_error("password_again", "The two passwords differ.")
        return data

    def bounded_for_display(self) -> None:
        """Re-display at most each field's length: the page never echoes an unbounded input back.
        Call after validation (the errors are already computed from the full values)."""
        self.errors  # noqa: B018  (computes and caches the errors before the data is cut)
        data = self.data.copy()
        for name, field in self.fields.items():
            limit = getattr(field, "max_length", None) or 254
            if name in data:
                data[name] = data[name][:limit]
        self.data = data


@require_http_methods(["GET", "POST"])
def signup(request):
    """Register a buyer organisation and its first user; the account is activated from the e-mail."""
    if request.user.is_authenticated:
        return redirect("catalogue")
    form = SignUpForm(request.POST or None)
    if request.method == "POST":
        try:
            accounts.check_rate(client=request.META.get("REMOTE_ADDR", ""))
        except DomainError as error:
            form.bounded_for_display()
            return render(
                request, "registration/signup.html", {"form": form, "refused": error.detail}, status=429
            )
        if form.is_valid():
            data = form.cleaned_data
            try:
                user = accounts.sign_up_buyer(
                    organization_name=data["organization_name"],
                    username=data["username"],
                    email=data["email"],
                    password=data["password"],
                    country=data["country"],
                )
            except DomainError as error:
                form.add_error(ERROR_FIELDS.get(error.code), error.detail)
            else:
                transaction.on_commit(lambda: _send(user))
                return render(request, "registration/signup_sent.html", {"email": user.email})
    if form.is_bound:
        form.bounded_for_display()
    return render(request, "registration/signup.html", {"form": form})


def _send(user) -> None:
    try:
        accounts.send_confirmation_email(user=user)
    except OSError:  # SMTP down: the user signs up again later; the log says why
        log.exception("signup: confirmation e-mail to user %s not sent", user.pk)


@require_http_methods(["GET"])
def signup_confirm(request, token: str):
    """The link in the e-mail: activate the account, then log in."""
    try:
        user = accounts.confirm_email(token=token)
    except DomainError as error:
        return render(
            request,
            "registration/signup_confirm_failed.html",
            {"detail": error.detail},
            status=error.status_code,
        )
    messages.success(request, f"Your e-mail address is confirmed, {user.get_username()}: log in to start.")
    return redirect(reverse("login") + "?next=" + reverse("library"))
