"""pgqueuer's QueueManager with a jittered safety-net poll.

The wake gate (app.jobs.wake_gate) wakes only the workers a new job needs, so pgqueuer's
periodic dequeue (`--dequeue-timeout`) is what finds a job whose notice was lost. A fleet
started together would poll in step, every worker at the same moment; each wait is drawn
from the last quarter of the timeout instead.
"""

from __future__ import annotations

import random
from datetime import timedelta

from pgqueuer import QueueManager

# The share of the full timeout a wait may be cut by.
POLL_JITTER = 0.25


class JitteredQueueManager(QueueManager):
    """A QueueManager whose idle wait is the dequeue timeout less a random quarter of it."""

    async def _effective_dequeue_timeout(self, dequeue_timeout: timedelta) -> timedelta:
        # pgqueuer's own choice first: a shorter wait for a job due soon is kept as it is.
        chosen = await super()._effective_dequeue_timeout(dequeue_timeout)
        if chosen < dequeue_timeout:
            return chosen
        return dequeue_timeout * (1 - POLL_JITTER * random.random())
