"""Where each role finds its pages: the header's links and the page a user lands on after logging in.

One place decides both, so the header never offers a link the landing page does not, and a new
role's pages appear in the header by adding one line here.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from .models import Membership, Notification, Role


@dataclass(frozen=True)
class NavLink:
    """One header link: its text, where it goes, and a stable id the page tests click."""

    label: str
    url: str
    ident: str


def roles_of(user) -> set[str]:
    """The roles the user holds in any organisation ("supplier", "buyer", "auditor")."""
    if user is None or not user.is_authenticated:
        return set()
    return set(Membership.objects.filter(user=user).values_list("role", flat=True))


def links_for(user) -> list[NavLink]:
    """The header links a signed-in user's roles call for, in reading order."""
    if user is None or not user.is_authenticated:
        return []
    roles = roles_of(user)
    links: list[NavLink] = []
    if Role.SUPPLIER in roles:
        links += [
            NavLink("Workspace", reverse("workspace"), "nav-workspace"),
            NavLink("Deliveries", reverse("supplier-deliveries"), "nav-deliveries"),
            NavLink("Requests", reverse("supplier-requests"), "nav-requests"),
            NavLink("Orders", reverse("supplier-orders"), "nav-orders"),
        ]
    if Role.AUDITOR in roles or user.is_staff:
        links.append(NavLink("Governance", reverse("governance-index"), "nav-governance"))
    # Anyone may hold entitlements through an organisation; the library is the buyer's home, and a
    # user with no role at all has nowhere else to see what they licensed.
    if Role.BUYER in roles or not roles:
        links.append(NavLink("Library", reverse("library"), "nav-library"))
    if user.is_staff:
        links.append(NavLink("Admin", reverse("admin:index"), "nav-admin"))
    return links


def unread_count(user) -> int:
    return Notification.objects.for_user(user).unread().count()


def home_url(user) -> str:
    """The page a user lands on after logging in: their role's home, the catalogue otherwise.

    A user with several roles lands on the first of supplier, auditor, buyer: the pages that
    role works in are the ones a visitor of the catalogue cannot reach by other means.
    """
    roles = roles_of(user)
    if Role.SUPPLIER in roles:
        return reverse("workspace")
    if Role.AUDITOR in roles:
        return reverse("governance-index")
    if Role.BUYER in roles:
        return reverse("library")
    if user.is_staff:
        return reverse("admin:index")
    return reverse("catalogue")
