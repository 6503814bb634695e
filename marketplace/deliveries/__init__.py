"""Supplier deliveries: an uploaded archive becomes a new draft version, or a report and nothing else.

``service`` is the entry point (create a delivery, ingest it); ``archive`` opens it within its
limits, ``images`` and ``plan`` check it, ``schema`` merges its categories, ``write`` commits it,
``report`` says what was found; ``tasks`` runs the ingest on a worker.
"""
