"""Shared helpers of the tests: real servers on loopback (SMTP, a fault-injecting proxy, a
web server), PostgreSQL schemas, and the test newsletter's constants. Test modules import from
here, never from each other."""
