"""The one error vocabulary: services raise ``DomainError`` with an ``ErrorCode``.

No Django HTTP or DRF here: a service says *what* went wrong (a code, a sentence, an HTTP status
as a plain number), and ``marketplace.api.errors`` renders it as ``{"code", "detail", ...}``.
"""

from enum import StrEnum
from http import HTTPStatus


class ErrorCode(StrEnum):
    """Every ``code`` the API answers with. The strings are part of the API: never rename one."""

    # Raised by DRF itself and by our handler for Django's exceptions.
    INVALID = "invalid"
    ERROR = "error"
    NOT_FOUND = "not_found"
    NOT_AUTHENTICATED = "not_authenticated"
    AUTHENTICATION_FAILED = "authentication_failed"
    PERMISSION_DENIED = "permission_denied"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    PARSE_ERROR = "parse_error"
    THROTTLED = "throttled"
    # Query parameters: a yes/no that is neither, a parameter the endpoint does not know.
    INVALID_BOOLEAN = "invalid_boolean"
    UNKNOWN_PARAMETER = "unknown_parameter"
    # Hardening (#14): hostile bodies, password guessing, a busy embedded database.
    INVALID_JSON = "invalid_json"
    JSON_TOO_LARGE = "json_too_large"
    JSON_TOO_DEEP = "json_too_deep"
    LOCKED_OUT = "locked_out"
    DATABASE_BUSY = "database_busy"
    # Serializer field errors surface their own DRF code (``required``, ``blank``, ``invalid_choice``,
    # ...) as the first field's code; those come from DRF's fields and are not listed here.

    # Catalogue, workspace and publication.
    NOT_A_SUPPLIER = "not_a_supplier"
    SLUG_TAKEN = "slug_taken"
    SLUG_IMMUTABLE = "slug_immutable"
    TAG_TAKEN = "tag_taken"
    INVALID_SCHEMA = "invalid_schema"
    INVALID_ATTRIBUTES = "invalid_attributes"
    INVALID_CATEGORY = "invalid_category"
    VERSION_FROZEN = "version_frozen"
    NOT_PUBLISHABLE = "not_publishable"
    NOT_DRAFT = "not_draft"
    NOT_PUBLISHED = "not_published"
    NO_VERSIONS = "no_versions"
    NO_SUCH_VERSION = "no_such_version"
    NO_BASE_VERSION = "no_base_version"
    SAME_VERSION = "same_version"
    REASON_REQUIRED = "reason_required"
    DATASET_REQUIRED = "dataset_required"
    DATASET_RELEASED = "dataset_released"
    ALREADY_WITHDRAWN = "already_withdrawn"
    GUIDELINE_IMMUTABLE = "guideline_immutable"

    # Deliveries.
    INVALID_FORMAT = "invalid_format"
    INVALID_DEFAULTS = "invalid_defaults"
    INVALID_MATCHING = "invalid_matching"
    TOO_LARGE = "too_large"
    DELIVERY_IN_PROGRESS = "delivery_in_progress"

    # Licensing and commerce.
    ALREADY_ENTITLED = "already_entitled"
    ALREADY_DECIDED = "already_decided"
    ENTITLEMENT_INACTIVE = "entitlement_inactive"
    IDEMPOTENCY_KEY_REQUIRED = "idempotency_key_required"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    LICENSE_NOT_ACCEPTED = "license_not_accepted"
    NOT_A_BUYER = "not_a_buyer"
    NOT_ENTITLED = "not_entitled"
    NO_REQUEST_NEEDED = "no_request_needed"
    NO_SEATS_LEFT = "no_seats_left"
    OFFER_UNAVAILABLE = "offer_unavailable"
    ORDER_NOT_CANCELLABLE = "order_not_cancellable"
    ORDER_NOT_PAYABLE = "order_not_payable"
    ORGANIZATION_REQUIRED = "organization_required"
    REQUEST_REQUIRED = "request_required"
    FORBIDDEN = "forbidden"
    LICENSE_ACCEPTED = "license_accepted"

    # Exports, downloads and previews.
    INVALID_OPTIONS = "invalid_options"
    INVALID_LIMIT = "invalid_limit"
    INVALID_LINK = "invalid_link"
    LINK_EXPIRED = "link_expired"
    NOT_READY = "not_ready"

    # Governance: review queue, quality reports, ledger.
    INVALID_ACTION = "invalid_action"
    INVALID_GEOMETRY = "invalid_geometry"
    INVALID_REVIEWER = "invalid_reviewer"
    INVALID_THRESHOLD = "invalid_threshold"
    INVALID_TREE_HEADS = "invalid_tree_heads"
    LABEL_REQUIRED = "label_required"
    LEDGER_INTEGRITY = "ledger_integrity"
    NOTHING_TO_FIX = "nothing_to_fix"
    NOTHING_TO_REVIEW = "nothing_to_review"
    NOT_YET_SIGNED = "not_yet_signed"


class DomainError(Exception):
    """A business rule said no; services raise it, the API turns it into a 4xx."""

    status_code: int = HTTPStatus.BAD_REQUEST
    code: ErrorCode | str = ErrorCode.INVALID

    def __init__(
        self,
        detail: str,
        *,
        code: ErrorCode | str | None = None,
        status_code: int | None = None,
        extra: dict | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        if code:
            # Our codes become ErrorCode members; a plug-in's own code (a payment provider's
            # ``payment_not_found``) passes through as the string it gave.
            self.code = ErrorCode(code) if code in ErrorCode._value2member_map_ else code
        if status_code:
            self.status_code = int(status_code)
        self.extra = extra or {}


def not_found(detail: str = "Not found.") -> DomainError:
    """The refusal that does not reveal whether the thing exists."""
    return DomainError(detail, code=ErrorCode.NOT_FOUND, status_code=HTTPStatus.NOT_FOUND)


class LoginRequired(DomainError):
    """The anonymous asked for something only a logged-in user may do (the API answers 401 with
    ``WWW-Authenticate``, as DRF does for its own ``NotAuthenticated``)."""

    def __init__(self, detail: str):
        super().__init__(detail, code=ErrorCode.NOT_AUTHENTICATED, status_code=HTTPStatus.UNAUTHORIZED)
