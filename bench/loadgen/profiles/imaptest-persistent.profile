# imaptest's default command mix on persistent sessions: the same weights as
# imaptest-default (LIST and STATUS 50, the rest 100), but each client logs in once
# and keeps its connection for the whole run, as desktop and mobile clients do. What
# this profile measures is the cost of steady-state commands, not of password hashing.
[client]
name = imaptest-persistent
mailbox = INBOX
think = 0
groups_per_session = 0

[connect]
login

[mix]
50 list
50 status
100 select
100 fetch items="(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])" set=random:10
100 fetch2 items="(UID BODY.PEEK[])" set=random:1
100 store flags="+FLAGS (\Seen)" set=random:5
100 delete set=random:1
100 expunge
100 append size=4k

[disconnect]
logout
