"""Stage 6 of the flow: personalise. One recipient builder and one message composer.

wire.py        MessageTemplate: the wire bytes prepared once, filled in per recipient
recipients.py  who a message is for (real send, test copy, dry run, preview, check)
confirmation.py the confirmation email, through the same composer and signer
dkim.py        DKIM signing of the finished bytes
"""
