"""The simulated station's supervisor (``supervisor``) and its ``sim`` command group
(``commands``): jCardSim cards behind vpcd readers in pcscd, for development and tests."""
