# A webmail front end that sorts and threads on the server (as Roundcube does): every
# page view is a fresh connection that logs in, selects INBOX, asks for the whole
# mailbox in the user's order (UID SORT or UID THREAD REFERENCES) and fetches the
# headers the message list shows for one page of 50, sometimes opening one message.
[client]
name = webmail-sort
mailbox = INBOX
think = 500ms..3s
groups_per_session = 1

[connect]
login
select

[mix]
30 sort program="(REVERSE ARRIVAL)" uid=yes ; fetch items="(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (DATE FROM TO CC SUBJECT CONTENT-TYPE)])" set=newest:50 uid=yes
25 sort program="(REVERSE DATE)" uid=yes ; fetch items="(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (DATE FROM TO CC SUBJECT CONTENT-TYPE)])" set=newest:50 uid=yes
15 sort program="(SUBJECT)" uid=yes ; fetch items="(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (DATE FROM TO CC SUBJECT CONTENT-TYPE)])" set=newest:50 uid=yes
20 thread algorithm=REFERENCES uid=yes ; fetch items="(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (DATE FROM TO CC SUBJECT CONTENT-TYPE)])" set=newest:50 uid=yes
10 sort program="(REVERSE DATE)" uid=yes ; fetch2 items="(UID BODY.PEEK[])" set=random:1

[disconnect]
logout
