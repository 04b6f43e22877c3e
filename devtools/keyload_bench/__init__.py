"""The benchmark of ``personalize`` on the simulated station (``run``) and its ``bench`` command
(``commands``); docs/PERFORMANCE.md explains the figures."""
