"""Signals the marketplace sends for others to react to; never a step its own flow needs.

``version_published`` is sent once a publication has committed, with ``version_id``; governance
connects its quality reports to it in ``GovernanceConfig.ready()``, so the marketplace never
imports ``governance.quality``.

``notifications_created`` is sent once new notification rows have committed, with
``notification_ids``; ``notifications/tasks.py`` emails them on a worker (connected in
``MarketplaceConfig.ready()``), so the service never imports the task module.
"""

from django.dispatch import Signal

version_published = Signal()  # kwargs: version_id
notifications_created = Signal()  # kwargs: notification_ids
