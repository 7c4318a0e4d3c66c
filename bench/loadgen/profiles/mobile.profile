# A phone: connects once, then sits in IDLE for long periods and, on waking, fetches
# the newest few messages' flags and envelopes before idling again.
[client]
name = mobile
mailbox = INBOX
think = 0
groups_per_session = 0

[connect]
login
select

[mix]
1 idle duration=5m ; fetch items="(UID FLAGS ENVELOPE)" set=newest:10

[disconnect]
logout
