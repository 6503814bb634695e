"""Server-rendered pages: the catalogue and a dataset's page. Reads only; scoped like the API."""

from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render

from .api.views import attach_versions, catalogue_queryset
from .filters import DatasetFilter
from .models import Role, org_ids


def catalogue(request):
    """The catalogue with the API's filters."""
    filterset = DatasetFilter(request.GET or None, queryset=catalogue_queryset(request.user), request=request)
    datasets = (
        filterset.qs if filterset.is_bound and filterset.is_valid() else catalogue_queryset(request.user)
    )
    page = Paginator(datasets, 12).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "marketplace/catalogue.html",
        {"filter": filterset, "page": page, "query": query.urlencode()},
    )


def dataset_detail(request, slug):
    """One dataset: versions, datasheet, schema, offers. Drafts are the supplier's alone."""
    try:
        dataset = catalogue_queryset(request.user).get(slug=slug)
    except catalogue_queryset(request.user).model.DoesNotExist:
        raise Http404("No such dataset") from None
    attach_versions(dataset, request.user)
    version = dataset.current_version
    wanted = request.GET.get("version")
    if wanted and wanted.isdigit():
        match = [v for v in dataset.visible_versions if v.number == int(wanted)]
        if not match:
            raise Http404("No such version")
        version = match[0]
    schema = getattr(version, "schema", None) if version else None
    return render(
        request,
        "marketplace/dataset_detail.html",
        {
            "dataset": dataset,
            "version": version,
            "datasheet": getattr(version, "datasheet", None) if version else None,
            "categories": schema.categories.all() if schema else [],
            "attributes": schema.attributes.all() if schema else [],
            "guideline_versions": version.guideline_versions.select_related("guideline") if version else [],
            "is_supplier": dataset.supplier_id in org_ids(request.user, Role.SUPPLIER),
        },
    )
