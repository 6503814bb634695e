"""Template tags of the site header: which links a signed-in user's roles call for."""

from django import template

from .. import navigation

register = template.Library()


@register.simple_tag
def nav_roles(user) -> set[str]:
    """The roles the user holds in any organisation ("supplier", "buyer", "auditor")."""
    return navigation.roles_of(user)


@register.simple_tag
def nav_links(user) -> list[navigation.NavLink]:
    """The header links for this user (navigation.links_for)."""
    return navigation.links_for(user)


@register.simple_tag
def nav_unread(user) -> int:
    """How many of the user's notifications are unread."""
    return navigation.unread_count(user)
