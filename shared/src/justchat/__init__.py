"""justchat: the library every service imports.

Modules: ``wire`` (browser frames), ``events`` (service-to-service payloads), ``keys`` (Redis
names), ``settings``, ``auth`` (JWT, argon2id), ``db`` (pools, migrations), ``members``
(presence value format), ``streams`` and ``leases`` (partitioned consumers), ``service`` (health,
metrics, running uvicorn), ``client`` (an asyncio client), ``stack`` and ``devservers``
(``make run``).
"""

__version__ = "0.1.0"
