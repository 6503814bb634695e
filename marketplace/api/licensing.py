"""Licensing API: buy or request an offer, read orders, requests and entitlements, decide and confirm.

Every queryset is scoped to the user before the view runs: a buyer sees their organisations' rows, a
supplier the rows about the datasets they supply; anything else is a 404. The services in
marketplace.licensing.service make the decisions; these views parse, look up, call and serialize.
"""

from __future__ import annotations

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import visibility
from ..licensing import service as licensing
from ..models import AccessRequest, Entitlement, Offer, Order
from .serializers import LicenseSerializer, OrganizationSerializer

# --------------------------------------------------------------------------- serializers


class OrderSerializer(serializers.ModelSerializer):
    organization = OrganizationSerializer()
    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    license = serializers.StringRelatedField()
    placed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    confirmed_by = serializers.SlugRelatedField(
        source="marked_paid_by", slug_field="username", read_only=True
    )

    class Meta:
        model = Order
        fields = [
            "id",
            "invoice_number",
            "status",
            "organization",
            "dataset",
            "offer",
            "license",
            "price",
            "currency",
            "entitlement",
            "placed_by",
            "payment_reference",
            "confirmed_by",
            "created_at",
            "paid_at",
        ]


class AccessRequestSerializer(serializers.ModelSerializer):
    organization = OrganizationSerializer()
    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    license = serializers.StringRelatedField(source="offer.license")
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = AccessRequest
        fields = [
            "id",
            "status",
            "organization",
            "dataset",
            "offer",
            "license",
            "message",
            "reason",
            "requested_by",
            "entitlement",
            "created_at",
            "decided_at",
        ]


class SeatSerializer(serializers.Serializer):
    user = serializers.CharField(source="user.username")
    accepted_at = serializers.DateTimeField()
    text_sha256 = serializers.CharField()


class EntitlementSerializer(serializers.ModelSerializer):
    organization = OrganizationSerializer()
    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    license = LicenseSerializer()
    active = serializers.SerializerMethodField()
    seats_used = serializers.SerializerMethodField()
    has_seat = serializers.SerializerMethodField()
    versions = serializers.SerializerMethodField()

    class Meta:
        model = Entitlement
        fields = [
            "id",
            "organization",
            "dataset",
            "license",
            "all_versions",
            "versions",
            "starts_at",
            "ends_at",
            "revoked_at",
            "active",
            "seats_used",
            "has_seat",
        ]

    def get_active(self, obj) -> bool:
        return Entitlement.objects.active().filter(pk=obj.pk).exists()

    def get_seats_used(self, obj) -> int:
        return len(obj.seats.all())

    def get_has_seat(self, obj) -> bool:
        user = self.context["request"].user
        return any(seat.user_id == user.pk for seat in obj.seats.all())

    def get_versions(self, obj) -> list[int]:
        return sorted(v.number for v in obj.versions.all())


class PurchaseSerializer(serializers.Serializer):
    accept_license = serializers.BooleanField(help_text="You have read the license terms and accept them")
    idempotency_key = serializers.CharField(
        required=False,
        max_length=100,
        help_text="Or the Idempotency-Key header: the same key, the same order",
    )


class RequestAccessSerializer(serializers.Serializer):
    accept_license = serializers.BooleanField()
    message = serializers.CharField(required=False, allow_blank=True, max_length=4000)


class DecideSerializer(serializers.Serializer):
    approve = serializers.BooleanField()
    reason = serializers.CharField(required=False, allow_blank=True, max_length=4000)


class MarkPaidSerializer(serializers.Serializer):
    """The supplier's confirmation that an invoice's transfer arrived (checked by the payment provider)."""

    # Plain text fields: the payment provider checks them and answers with its own error codes
    # (payment_reference_required, payment_amount_invalid, payment_amount_mismatch).
    reference = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="The bank's reference of the transfer"
    )
    amount = serializers.CharField(
        required=False, allow_blank=True, max_length=40, help_text="The amount received, e.g. 4900.00"
    )
    currency = serializers.CharField(
        required=False, allow_blank=True, max_length=3, help_text="ISO 4217; the invoice's when left out"
    )


# --------------------------------------------------------------------------- offers


def visible_offer(user, offer_id: int) -> Offer:
    return get_object_or_404(
        Offer.objects.filter(dataset__in=visibility.datasets(user)).select_related("license", "dataset"),
        pk=offer_id,
    )


class PurchaseView(APIView):
    """License an offer: buy it (an invoice) or, for an open offer, claim it for free."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=PurchaseSerializer,
        responses={201: OrderSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                location=OpenApiParameter.HEADER,
                required=True,
                description="Required (1 to 100 characters; or `idempotency_key` in the body): the same key "
                "answers the same order, so a retried purchase never buys twice. Without one the answer is "
                "400 `idempotency_key_required` (or `license_not_accepted` when the license is not "
                "accepted either: that is checked first).",
            )
        ],
    )
    def post(self, request, offer_id: int):
        offer = visible_offer(request.user, offer_id)
        body = PurchaseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key") or body.validated_data.get("idempotency_key") or ""
        order = licensing.purchase(
            user=request.user,
            offer=offer,
            idempotency_key=key,
            accept_license=body.validated_data["accept_license"],
        )
        return Response(OrderSerializer(order).data, status=status.HTTP_201_CREATED)


class RequestAccessView(APIView):
    """Ask the supplier for access to an offer in "request" mode."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=RequestAccessSerializer, responses={201: AccessRequestSerializer})
    def post(self, request, offer_id: int):
        offer = visible_offer(request.user, offer_id)
        body = RequestAccessSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        access_request = licensing.request_access(
            user=request.user,
            offer=offer,
            accept_license=body.validated_data["accept_license"],
            message=body.validated_data.get("message", ""),
        )
        return Response(AccessRequestSerializer(access_request).data, status=status.HTTP_201_CREATED)


# --------------------------------------------------------------------------- orders, requests, entitlements


class OrderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Orders (invoices) of your organisations, and for the datasets you supply."""

    serializer_class = OrderSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        return visibility.orders(self.request.user).select_related(
            "organization", "dataset", "license", "placed_by"
        )

    @extend_schema(request=MarkPaidSerializer, responses=OrderSerializer)
    @action(detail=True, methods=["post"], url_path="mark-paid")
    def mark_paid(self, request, pk=None):
        body = MarkPaidSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        order = licensing.mark_paid(
            user=request.user,
            order=self.get_object(),
            reference=body.validated_data.get("reference", ""),
            amount=body.validated_data.get("amount", ""),
            currency=body.validated_data.get("currency", ""),
        )
        return Response(OrderSerializer(order).data)

    @extend_schema(request=None, responses=OrderSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        order = licensing.cancel_order(user=request.user, order=self.get_object())
        return Response(OrderSerializer(order).data)


class AccessRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Access requests your organisations made, and those made for the datasets you supply."""

    serializer_class = AccessRequestSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        return visibility.access_requests(self.request.user).select_related(
            "organization", "dataset", "offer__license", "requested_by"
        )

    @extend_schema(request=DecideSerializer, responses=AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def decide(self, request, pk=None):
        body = DecideSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        decided = licensing.decide_request(
            user=request.user,
            request=self.get_object(),
            approve=body.validated_data["approve"],
            reason=body.validated_data.get("reason", ""),
        )
        return Response(AccessRequestSerializer(decided).data)

    @extend_schema(request=None, responses=AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def withdraw(self, request, pk=None):
        withdrawn = licensing.withdraw_request(user=request.user, request=self.get_object())
        return Response(AccessRequestSerializer(withdrawn).data)


class EntitlementViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your organisations' entitlements (and, for suppliers, those on their datasets), with seats."""

    serializer_class = EntitlementSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        return (
            visibility.entitlements(self.request.user)
            .select_related("organization", "dataset", "license")
            .prefetch_related("versions", Prefetch("seats"))
            .order_by("-created_at", "-id")
        )

    @extend_schema(request=None, responses=EntitlementSerializer)
    @action(detail=True, methods=["post"], url_path="accept-license")
    def accept_license(self, request, pk=None):
        """Accept the license as a member of the entitled organisation: this takes one of its seats."""
        licensing.claim_seat(user=request.user, entitlement=self.get_object())
        return Response(EntitlementSerializer(self.get_object(), context={"request": request}).data)
