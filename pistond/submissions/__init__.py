"""Asynchronous submissions: a token now, the result later, by polling or by callback.

``POST /api/v2/submissions`` stores a Piston execute body and answers with a token at once;
workers take stored submissions from the queue, run them through the daemon's ``execute`` RPC
and store the result; ``GET /api/v2/submissions/{token}`` reads it, and a ``callback_url``
receives it by ``POST``. The queue is a database table: SQLite in the gateway's data directory
by default, or PostgreSQL, which gateways on any number of machines share (claims with
``FOR UPDATE SKIP LOCKED``, leases that a dead machine's submissions outlive).

The workers live in the gateway process, which already speaks RPC to the daemon and holds no
privileges: the daemon stays free of databases and network clients. One concern per module:

- :mod:`~pistond.submissions.records`: the records and states the store hands out;
- :mod:`~pistond.submissions.tokens`: the 128-bit tokens;
- :mod:`~pistond.submissions.schema`: the table (SQLAlchemy Core) and the database's clock;
- :mod:`~pistond.submissions.database`: engines, migrations (Alembic), the thread hop;
- :mod:`~pistond.submissions.store`: every query, each one atomic statement;
- :mod:`~pistond.submissions.outcome`: a daemon answer as the stored result, size-capped;
- :mod:`~pistond.submissions.runner`: the workers (claim, lease, execute, complete);
- :mod:`~pistond.submissions.addresses`: where callbacks may go (``PISTON_CALLBACK_ALLOW``);
- :mod:`~pistond.submissions.delivery`: one callback ``POST`` to the checked address;
- :mod:`~pistond.submissions.callbacks`: callback retries with a bounded back-off;
- :mod:`~pistond.submissions.views`: a submission as JSON;
- :mod:`~pistond.submissions.routes`: the HTTP routes;
- :mod:`~pistond.submissions.service`: all of it wired up and kept running in the gateway.
"""
