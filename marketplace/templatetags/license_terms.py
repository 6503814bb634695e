"""How a license term reads to a buyer: a permission granted is good news, an obligation is neither."""

from django import template

register = template.Library()

# Terms that oblige the buyer rather than permit something: "No" is not a refusal, so it is not red.
OBLIGATIONS = {"Attribution required"}


@register.filter
def term_tone(name: str, allowed: bool) -> str:
    """CSS class for a term's value: "yes"/"no" for permissions, "" for obligations."""
    if name in OBLIGATIONS:
        return ""
    return "yes" if allowed else "no"
