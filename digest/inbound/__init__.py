"""What comes back after a send: mailbox sources, classification (DSN, ARF, auto-reply,
emailed unsubscribe) and what is done about each (bounce score, unsubscribe)."""
