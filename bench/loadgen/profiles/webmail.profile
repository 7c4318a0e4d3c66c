# A non-caching webmail backend: every page view is a fresh connection that logs in,
# lists folders, selects INBOX and fetches envelope and structure of the newest 50,
# sometimes opening one message, then logs out.
[client]
name = webmail
mailbox = INBOX
think = 500ms..3s
groups_per_session = 1

[connect]
login
list
select
fetch items="(UID FLAGS ENVELOPE BODYSTRUCTURE)" set=newest:50

[mix]
60 noop
30 fetch2 items="(UID BODY.PEEK[])" set=random:1 ; store flags="+FLAGS (\Seen)" set=random:1
10 status mailbox=INBOX items="(MESSAGES UNSEEN)"

[disconnect]
logout
