# A caching desktop client (Thunderbird-like): on connect it resynchronises flags and
# fetches the headers of new mail by UID, then mostly idles, waking to fetch what
# arrived, changing flags and now and then reading a whole message.
[client]
name = desktop
mailbox = INBOX
think = 1s..10s
groups_per_session = 0

[connect]
login
list
select
fetch items="(UID FLAGS)" set=all uid=yes
fetch items="(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER])" set=newest:20 uid=yes

[mix]
40 idle duration=30s ; fetch items="(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER])" set=newest:5 uid=yes
25 store flags="+FLAGS (\Seen)" set=random:1 uid=yes
15 fetch2 items="(UID BODY.PEEK[])" set=random:1
10 fetch items="(UID FLAGS)" set=all uid=yes
5 store flags="+FLAGS (\Flagged)" set=random:1 uid=yes
5 noop

[disconnect]
logout
