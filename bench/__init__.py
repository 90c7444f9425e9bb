"""``make bench``: a load generator for the whole stack (picows + uvloop, one event loop).

Modules: ``options`` (command line), ``target`` (start the stack pinned, or given URLs),
``client`` (one simulated user, callbacks only), ``pool`` (connect many), ``load`` (pacing,
closed loop, drain), ``phase`` and ``stats`` (what arrived: loss, order, latency), ``procs`` and
``meter`` (CPU and memory from /proc, py-spy), ``report`` (Markdown and JSON), ``scenarios``.
"""
