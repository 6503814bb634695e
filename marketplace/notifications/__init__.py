"""Who hears of new versions, deprecations and decisions (``service``); the e-mail task (``tasks``)."""
