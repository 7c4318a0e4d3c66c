# The command mix of Dovecot imaptest's default profile: after LOGIN, each of these
# with imaptest's default probabilities as weights (LIST and STATUS 50, the rest 100),
# about one of each per session, then LOGOUT. imaptest walks its states in a fixed
# order; here they come in random order, which keeps the same proportions. No think
# time: imaptest drives the server flat out.
[client]
name = imaptest-default
mailbox = INBOX
think = 0
groups_per_session = 9

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
