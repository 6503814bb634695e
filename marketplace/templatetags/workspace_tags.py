"""Template tags of the supplier's workspace: the changelog on a dataset's page."""

from django import template

from marketplace.models import Datasheet
from marketplace.workspace import diff as workspace_diff

register = template.Library()


@register.simple_tag
def changelog_for(dataset) -> list[dict]:
    """Released versions the page shows, newest first, each with its diff against the release before it.

    Reads ``dataset.visible_versions`` (set by the page for the signed-in user) so nobody sees a
    version the page would not show them; released diffs are cached, they can no longer change.
    """
    versions = getattr(dataset, "visible_versions", None)
    if versions is None:
        versions = list(dataset.versions.released())
    return workspace_diff.changelog(list(versions))


@register.filter
def datasheet_completeness(version) -> int | None:
    """A version's datasheet completeness in percent (None without a datasheet), for catalogue cards."""
    sheet = Datasheet.objects.filter(version=version).first() if version is not None else None
    return round(sheet.completeness() * 100) if sheet else None
