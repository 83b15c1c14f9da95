"""Email: composing messages from events, the delivery queue and the transports.

Nothing here is imported by a pass that has no mail to handle beyond the
light modules (``queue``, ``errors``, ``health``); Jinja2, tenacity, the
Google clients and smtplib are imported inside the functions that use them.
"""
