"""The demo catalogue: drawn images (``drawing``), what it holds (``catalogue``), loading it (``loader``)."""
