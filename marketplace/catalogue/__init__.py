"""The catalogue: statistics and content hashes (``stats``), publication, search and facets
(``search``), previews of samples (``previews``), and the reads the API and pages share (``selectors``)."""
