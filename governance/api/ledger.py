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
from ..ledger import signing, tasks
from ..models import LedgerVerification
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
    """Start a verification of a dataset's chain and roots against every stored head and any the caller holds.

    Answers 202 with the job's id and status URL at once: the chunks run as tasks (on every Celery worker
    when a broker is configured, in-process otherwise), never inside this request's wait on a worker.
    """

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=inline_serializer(
            "LedgerVerifyRequest",
            {
                "dataset": serializers.SlugField(),
                "tree_heads": serializers.ListField(child=serializers.DictField(), required=False),
            },
        ),
        responses={202: OpenApiTypes.OBJECT},
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
        if len(trusted) > MAX_TRUSTED_HEADS:
            raise DomainError(f"Give at most {MAX_TRUSTED_HEADS} tree heads.", code="invalid_tree_heads")
        dataset: Dataset = provenance.get_readable_dataset(request.user, slug)
        job = tasks.start_verification(dataset=dataset, user=request.user, trusted_heads=trusted)
        return Response(verification_payload(job, request), status=202)


MAX_TRUSTED_HEADS = 100


def verification_payload(job, request) -> dict:
    """A verification job as the API shows it; the report once it is done."""
    job.refresh_from_db()
    body = {
        "id": job.pk,
        "dataset": job.dataset.slug,
        "status": job.status,
        "tree_size": job.tree_size,
        "chunks_total": job.chunks_total,
        "chunks_done": job.chunks_done,
        "url": request.build_absolute_uri(f"/api/v1/ledger/verify/{job.pk}/"),
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "error": job.error,
        "report": job.report,
    }
    if job.status == job.Status.DONE:
        latest = ledger.latest_tree_head(job.dataset)
        body["latest_tree_head"] = ledger.tree_head_document(latest) if latest else None
    return body


class VerificationStatusView(APIView):
    """A verification job the caller started: its progress, then its report."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, job_id):
        job = (
            LedgerVerification.objects.select_related("dataset")
            .filter(pk=job_id, requested_by=request.user)
            .first()
        )
        if job is None:
            raise exceptions.NotFound()
        provenance.get_readable_dataset(request.user, job.dataset.slug)  # access may have ended since
        return Response(verification_payload(job, request))


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
