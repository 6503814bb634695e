"""Signals the marketplace sends for other apps to react to; never a step its own flow needs.

``version_published`` is sent once a publication has committed, with ``version_id``; governance
connects its quality reports to it in ``GovernanceConfig.ready()``, so the marketplace never
imports ``governance.quality``.
"""

from django.dispatch import Signal

version_published = Signal()  # kwargs: version_id
