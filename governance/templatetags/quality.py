"""``{% quality_summary version %}``: the quality card of the dataset page, from the stored reports only."""

from django import template

from governance.models import QualityReport
from governance.quality.access import is_supplier
from governance.views.quality import chart_context

register = template.Library()


@register.inclusion_tag("governance/quality/_summary.html", takes_context=True)
def quality_summary(context, version):
    """Class and demographic bars and the agreement headline; never computes (a page must stay fast)."""
    stored = {r.kind: r.result for r in QualityReport.objects.filter(version=version)}
    request = context.get("request")
    user = getattr(request, "user", None)
    charts = chart_context(stored.get("stats"), stored.get("agreement"), stored.get("balance"))
    return {
        "dataset": version.dataset,
        "version": version,
        "ready": "balance" in stored and "agreement" in stored,
        "is_supplier": bool(user) and is_supplier(user, version),
        "gap_count": len(stored.get("balance", {}).get("gaps", [])),
        **charts,
    }
