"""The marketplace's models, one module per part of the domain (as netbox's ``dcim/models/``).

Everything is re-exported here, so ``from marketplace.models import Dataset`` keeps working and
Django finds every model under the one app label ``marketplace``.
"""

from .catalogue import *  # noqa: F403
from .commerce import *  # noqa: F403
from .deliveries import *  # noqa: F403
from .exports import *  # noqa: F403
from .notifications import *  # noqa: F403
from .organisations import *  # noqa: F403
from .withdrawals import *  # noqa: F403
