"""Governance pages: ``ledger`` (a label's history, a version's provenance, proof bundles) and
``quality`` (the quality charts, the compliance report, the supplier's review queue)."""
