"""Server-rendered pages, by audience: ``catalogue`` (everyone), ``library`` (buyers), ``supplier``
(deliveries, requests, orders) and ``workspace`` (the supplier's editing, and notifications)."""
