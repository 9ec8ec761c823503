"""Every Redis key, pub/sub channel and message header Librarian adds, in one place.

kombu's own keys (`unacked`, `unacked_index`, `_kombu.binding.*`, the queue lists named after their
queues) and Celery's (`celery-task-meta-*`) are not listed: they belong to those libraries.
Templates take `str.format` fields.
"""

from __future__ import annotations

from typing import Final

# -- Publish journal (app/broker/journal.py) ------------------------------------------------------
# hash: delivery tag -> JSON [queue list key, message as pushed]
JOURNAL: Final = "librarian:journal"
# One sorted set per queue list, numbering its messages from the tail (taken next) to the head.
JOURNAL_INDEX_PREFIX: Final = "librarian:journal:index:"
JOURNAL_SEQUENCE: Final = "librarian:journal:seq"  # counter for pushes at the head
JOURNAL_TAIL_SEQUENCE: Final = "librarian:journal:tail-seq"  # counter for pushes at the tail
JOURNAL_SUSPECTS: Final = "librarian:journal:suspects"  # hash: delivery tag -> first time seen missing
SWEEP_LOCK: Final = "librarian:journal:sweep-lock"  # one recovery sweep at a time, across workers

# -- Who holds what (app/broker/holders.py) -------------------------------------------------------
HOLDER: Final = "librarian:broker:holder"  # hash: delivery tag -> incarnation holding it unacknowledged
HELD: Final = "librarian:broker:held:{incarnation}"  # set: delivery tags an incarnation holds
INCARNATIONS: Final = "librarian:broker:incarnations"  # sorted set: incarnation -> time of its last beat

# -- Worker heartbeats (app/worker/heartbeat.py writes, app/core/workers.py reads) ----------------
WORKER: Final = "librarian:worker:{hostname}"  # JSON heartbeat, expires when the worker stops beating
WORKER_PREFIX: Final = "librarian:worker:"
WORKERS: Final = "librarian:workers"  # sorted set: hostname -> time of its last beat

# -- Agent control (app/core/agents.py) -----------------------------------------------------------
PAUSE_CHANNEL: Final = "agent:pause:{user_id}"
RESUME_CHANNEL: Final = "agent:resume:{user_id}"
STATUS_CHANNEL: Final = "agent:status:{user_id}"
PAUSED: Final = "librarian:agent:paused:{user_id}"
HELD_MESSAGES: Final = "librarian:agent:held:{user_id}"  # list of a paused user's task messages
HELD_TASK: Final = "librarian:agent:held-task:{task_id}"  # which user's hold list has a task

# -- Beat --------------------------------------------------------------------------------------------
BEAT_PREFIX: Final = "librarian:beat"  # RedBeat's schedule entries (app/worker/celery_app.py)
BEAT_LOCK: Final = "librarian:beat:lock"  # held by the one beat that schedules (`librarian probe beat`)

# -- API side --------------------------------------------------------------------------------------
ISSUED_PREFIX: Final = "librarian:issued:"  # task ids the API issued (app/core/task_registry.py)
CACHE_PREFIX: Final = "librarian:cache:"  # small read-through cache (app/core/cache.py)

# -- Message headers --------------------------------------------------------------------------------
OWNER_HEADER: Final = "librarian_owner"  # the user a task runs for (pause/resume, status events)
PUBLISHED_AT_HEADER: Final = "librarian_published_at"  # publish time, for queue-wait metrics
ISSUED_HEADER: Final = "librarian_issued"  # set on messages the API recorded as issued (task_registry)
REQUEST_ID_HEADER: Final = "librarian_request_id"  # the API request that published a task, for task logs
