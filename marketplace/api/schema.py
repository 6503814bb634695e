"""The OpenAPI schema declares the API's one error shape on every operation.

``marketplace.api.errors`` renders every refusal as ``{"code", "detail", "fields"?}``; this
drf-spectacular post-processing hook adds that shape as the ``Error`` component and declares the
4xx answers every operation can give (unless the operation declares its own), so a client
generated from the schema knows what a refusal looks like.
"""

from __future__ import annotations

from marketplace.errors import ErrorCode

ERROR_COMPONENT = {
    "type": "object",
    "description": "Every error the API answers: a stable code, a sentence, and for invalid input the "
    "fields at fault.",
    "properties": {
        "code": {
            "type": "string",
            "description": "Stable machine-readable code (ErrorCode), or a serializer field's own code "
            "(required, blank, invalid_choice, ...)",
            "example": ErrorCode.NOT_FOUND.value,
        },
        "detail": {"type": "string", "description": "A sentence for people"},
        "fields": {
            "type": "object",
            "additionalProperties": True,
            "description": "Invalid input: the messages per field",
        },
    },
    "required": ["code", "detail"],
}

ERROR_RESPONSES = {
    "400": "The request is not valid (bad input, an unknown query parameter, a refused action)",
    "401": "Not authenticated",
    "403": "Authenticated but not allowed",
    "404": "Not found, or not visible to you",
}
_METHODS = ("get", "put", "patch", "post", "delete", "head", "options", "trace")


def add_error_responses(result, generator, request, public):
    """drf-spectacular POSTPROCESSING_HOOKS entry: the Error component and the 4xx answers."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_COMPONENT
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in ERROR_RESPONSES.items():
                responses.setdefault(status, {"description": description, "content": reference})
    return result
