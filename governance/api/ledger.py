"""Governance API: label histories with proofs, version provenance, the annotator registry, the ledger.

Every view resolves what it shows through ``governance.provenance``'s access rules before reading
anything, so another tenant's dataset, label or event is a 404, never a leak.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.api.pagination import Pagination
from marketplace.errors import DomainError
from marketplace.models import Dataset

from .. import ledger, provenance
from ..ledger import signing
from ..provenance import history_payload


class LabelHistoryView(APIView):
    """Every ledger event of one label across versions, with proofs a verifier can check offline."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, uid):
        dataset, events = provenance.label_history_events(
            request.user, uid, dataset_slug=request.GET.get("dataset")
        )
        return Response({"label_uid": str(uid), **history_payload(dataset, events)})


class VersionProvenanceView(APIView):
    """Who made a version's labels, when, under which guideline versions; human, model and consensus shares."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, slug, number):
        version = provenance.get_readable_version(request.user, slug, number)
        return Response(provenance.version_provenance(version))


class SupersededLabelSerializer(serializers.Serializer):
    uid = serializers.UUIDField()
    item = serializers.CharField(source="item.key")
    category = serializers.CharField(source="category.name")
    is_final = serializers.BooleanField()
    source = serializers.CharField()
    annotator = serializers.CharField(source="annotator.pseudonym", default=None)
    made_at = serializers.DateTimeField()
    guideline = serializers.CharField(source="guideline_version.guideline.title")
    guideline_version = serializers.CharField(source="guideline_version.tag")
    superseded_by = serializers.SerializerMethodField()

    def get_superseded_by(self, label) -> str | None:
        cache = self.context.setdefault("superseded_by", {})
        gv = label.guideline_version
        if gv.pk not in cache:
            later = gv.superseded_by()
            cache[gv.pk] = later.tag if later else None
        return cache[gv.pk]


class SupersededLabelsView(ListAPIView):
    """Labels of a version made under a guideline version that a later one has since replaced."""

    permission_classes = [IsAuthenticated]
    serializer_class = SupersededLabelSerializer
    pagination_class = Pagination
    filter_backends: list = []

    def get_queryset(self):
        version = provenance.get_readable_version(
            self.request.user, self.kwargs["slug"], self.kwargs["number"]
        )
        return provenance.superseded_labels(version)


class AnnotatorsView(APIView):
    """The supplier's annotators who worked on a dataset; demographics only in aggregate."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, slug):
        dataset = provenance.get_readable_dataset(request.user, slug)
        if not provenance.may_read_annotators(request.user, dataset):
            raise exceptions.PermissionDenied(
                "Only the supplier and auditors may read the annotator registry."
            )
        annotators = list(provenance.dataset_annotators(dataset))
        return Response(
            {
                "dataset": dataset.slug,
                "annotators": [
                    {
                        "pseudonym": a.pseudonym,
                        "role": a.role,
                        "qualifications": a.qualifications,
                        "training_records": a.training_records,
                        "expertise": a.expertise,
                        "active": a.active,
                        "labels_in_dataset": a.labels_in_dataset,
                    }
                    for a in annotators
                ],
                "demographics": provenance.aggregate_demographics(annotators),
            }
        )


class PublicKeyView(APIView):
    """The Ed25519 public key that signs tree heads; public, so anyone can verify."""

    permission_classes = [AllowAny]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(
            {"algorithm": "Ed25519", "key_id": signing.key_id(), "public_key": signing.public_key_pem()}
        )


class VerifyView(APIView):
    """Recompute a dataset's chain and roots against every stored tree head and any the caller holds."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=inline_serializer(
            "LedgerVerifyRequest",
            {
                "dataset": serializers.SlugField(),
                "tree_heads": serializers.ListField(child=serializers.DictField(), required=False),
            },
        ),
        responses=OpenApiTypes.OBJECT,
    )
    def post(self, request):
        slug = request.data.get("dataset") if isinstance(request.data, dict) else None
        if not isinstance(slug, str) or not slug:
            raise DomainError('Give the dataset to verify as {"dataset": slug}.', code="dataset_required")
        trusted = request.data.get("tree_heads") or []
        if not isinstance(trusted, list) or not all(isinstance(h, dict) for h in trusted):
            raise DomainError(
                "tree_heads must be a list of signed tree head objects.", code="invalid_tree_heads"
            )
        dataset: Dataset = provenance.get_readable_dataset(request.user, slug)
        report = ledger.verify_dataset(dataset=dataset, trusted_heads=trusted)
        latest = ledger.latest_tree_head(dataset)
        return Response(
            {**report.as_dict(), "latest_tree_head": ledger.tree_head_document(latest) if latest else None}
        )


class EventBundleView(APIView):
    """One event with its proof and the signed head: the file ``verify_offline.py --bundle`` reads."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, event_id):
        event = provenance.readable_event(request.user, event_id)
        try:
            return Response(ledger.proof_bundle(event))
        except ledger.LedgerIntegrityError as error:
            raise DomainError(str(error), code="ledger_integrity", status_code=409) from None
        except ledger.LedgerError as error:
            raise DomainError(str(error), code="not_yet_signed", status_code=409) from None
