"""Exports: a version rendered in a format, as one archive in storage, and its downloads.

``service`` requests and runs an export; ``records`` streams what it reads, ``documents`` writes
the datasheet, license and Croissant files, ``packaging`` builds the archive; ``downloads`` signs
links and records each download; ``tasks`` runs the build on a worker.
"""
