"""The SMTP filter: an aiosmtpd front end that scores mail and relays it to a next hop.

Upstream hears 250 only after the next hop accepted the message; a next-hop failure is
passed back; any exception in the filter gives 451, never 250 and never 5xx.
"""
