# One large message at a time: APPEND a 50 MiB message into the selected mailbox, FETCH
# it back whole (reported as fetch2), then delete and expunge it so the mailbox stays
# small. MB/s = 50 MiB / mean latency of the append and fetch2 rows.
[client]
name = transfer-50m
think = 0

[connect]
login
select

[mix]
1 append size=50m ; fetch2 items="(BODY.PEEK[])" set=newest:1 ; delete set=newest:1 ; expunge
