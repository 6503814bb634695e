"""The auditor's front page: every released version they may audit, with a link to each piece of evidence."""

from django.contrib.auth.decorators import login_required
from django.db.models import Count, OuterRef, Q, Subquery
from django.shortcuts import render

from marketplace.models import Label

from .. import provenance
from ..ledger import signing
from ..models import TreeHead


@login_required
def index(request):
    """Released versions whose provenance this user may read, newest first, with their evidence links."""
    first_label = Label.objects.filter(version=OuterRef("pk"), is_final=True).order_by("id").values("uid")[:1]
    head = TreeHead.objects.filter(version=OuterRef("pk")).order_by("-tree_size")
    versions = (
        provenance.readable_versions(request.user)
        .filter(status__in=provenance.RELEASED)
        .select_related("dataset", "dataset__supplier")
        .annotate(
            label_count=Count("labels", filter=Q(labels__is_final=True)),
            sample_label=Subquery(first_label),
            head_size=Subquery(head.values("tree_size")[:1]),
            head_time=Subquery(head.values("timestamp")[:1]),
        )
        .order_by("dataset__title", "-number")
    )
    return render(
        request,
        "governance/index.html",
        {"versions": versions, "key_id": signing.key_id()},
    )
