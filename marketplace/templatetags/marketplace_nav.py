"""Template tags of the site header: which links a signed-in user's roles call for."""

from django import template

from ..models import Membership

register = template.Library()


@register.simple_tag
def nav_roles(user) -> set[str]:
    """The roles the user holds in any organisation ("supplier", "buyer", "auditor")."""
    if user is None or not user.is_authenticated:
        return set()
    return set(Membership.objects.filter(user=user).values_list("role", flat=True))
