"""The steps of a pass, one module each, run in this order by ``passes``."""

STEPS = ("sync", "notify", "approve", "execute")
