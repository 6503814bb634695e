"""Catalogue API: every queryset is scoped to the requesting user before the view runs."""

from django.shortcuts import get_object_or_404
from django_filters.utils import translate_validation
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from .. import visibility
from ..catalogue import withdrawal as catalogue_withdrawal
from ..catalogue.search import DatasetFilter, facet_counts
from ..catalogue.selectors import attach_versions, catalogue_queryset
from ..models import DatasetVersion
from .query import refuse_unknown_parameters
from .serializers import DatasetDetailSerializer, DatasetListSerializer, VersionDetailSerializer


class DatasetViewSet(viewsets.ReadOnlyModelViewSet):
    """The catalogue: datasets, their versions, datasheets, schemas and offers."""

    lookup_field = "slug"
    filterset_class = DatasetFilter

    def get_queryset(self):
        return catalogue_queryset(self.request.user)

    def get_serializer_class(self):
        return DatasetDetailSerializer if self.action == "retrieve" else DatasetListSerializer

    def get_object(self):
        return attach_versions(super().get_object(), self.request.user)

    @extend_schema(
        filters=True,
        responses=inline_serializer(
            "CatalogueFacets",
            {
                "count": serializers.IntegerField(),
                "facets": serializers.DictField(
                    child=serializers.ListField(child=serializers.DictField()),
                    help_text="Per filter: value, label, count (with the other filters applied), selected",
                ),
            },
        ),
    )
    @action(detail=False, pagination_class=None)
    def facets(self, request):
        """How many datasets each filter value would give, with the other filters as they are."""
        refuse_unknown_parameters(request.query_params, DatasetFilter.base_filters, sort_parameter="sort")
        base = self.get_queryset()
        filterset = DatasetFilter(request.query_params, queryset=base, request=request)
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)  # keeps each field's code, as the list does
        return Response({"count": filterset.qs.count(), "facets": facet_counts(filterset, base)})

    @extend_schema(
        request=inline_serializer("WithdrawRequest", fields={"reason": serializers.CharField()}),
        responses=DatasetDetailSerializer,
    )
    @action(detail=True, methods=["post"])
    def withdraw(self, request, slug=None):
        """Staff only: withdraw a dataset (it has released versions, so it cannot be deleted), with a
        reason buyers read; recorded in the dataset's ledger."""
        dataset = self.get_object()
        reason = request.data.get("reason", "") if isinstance(request.data, dict) else ""
        catalogue_withdrawal.withdraw_dataset(dataset=dataset, reason=str(reason or ""), user=request.user)
        dataset = attach_versions(self.get_queryset().get(pk=dataset.pk), request.user)
        return Response(DatasetDetailSerializer(dataset, context=self.get_serializer_context()).data)


class VersionViewSet(viewsets.ReadOnlyModelViewSet):
    """The versions of one dataset that the user may see."""

    serializer_class = VersionDetailSerializer
    lookup_field = "number"
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no URL kwargs to scope by
            return DatasetVersion.objects.none()
        dataset = get_object_or_404(visibility.datasets(self.request.user), slug=self.kwargs["dataset_slug"])
        return (
            visibility.versions(self.request.user)
            .filter(dataset=dataset)
            .select_related("dataset", "datasheet", "schema")
            .prefetch_related("schema__categories", "schema__attributes")
            .order_by("-number")
        )
