# Mail delivery into the store over IMAP: a steady APPEND stream of typical sizes.
[client]
name = ingest
mailbox = INBOX
think = 0
groups_per_session = 0

[connect]
login

[mix]
70 append size=4k
25 append size=64k
5 append size=1m
