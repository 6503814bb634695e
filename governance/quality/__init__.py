"""Quality of a version's labels: agreement between annotators, consensus, balance, AI Act compliance.

``agreement`` measures how consistently independent annotators labelled the same images,
``consensus`` fuses their candidates and queues the disputed ones for review, ``balance`` reads class
and demographic balance, ``compliance`` assembles the Art. 10 / Annex IV evidence pack and
``reports`` computes and stores the four reports of a version. They start when marketplace sends
``version_published`` (``receivers``, connected in ``GovernanceConfig.ready()``), through the Celery
task in ``tasks``. The ledger never imports this package; marketplace never does either.
"""
