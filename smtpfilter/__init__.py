"""The SMTP filter front end: not built yet, see issue 5."""
