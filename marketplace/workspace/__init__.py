"""The supplier's workspace: every write a supplier makes outside a delivery.

``editing`` (datasets, datasheets, guidelines, licenses, offers), ``schema`` (categories and
attributes), ``lifecycle`` (draft, publish, deprecate), ``diff`` (what changed, the changelog).
"""
