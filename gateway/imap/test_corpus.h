// Test-only: valid commands covering every command and most argument forms,
// shared by the parser, receiver and round-trip tests and used to write the
// fuzzer's seed corpus.
#pragma once

#include <string>
#include <vector>

namespace imap::testing {

inline std::vector<std::string> ValidCommands() {
  using namespace std::string_literals;
  return {
      "a1 CAPABILITY\r\n",
      "a2 noop\r\n",
      "a3 LOGOUT\r\n",
      "a4 STARTTLS\r\n",
      "a5 AUTHENTICATE PLAIN\r\n",
      "a6 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
      "a7 AUTHENTICATE EXTERNAL =\r\n",
      "a8 LOGIN alice secret\r\n",
      "a9 LOGIN \"al ice\" {6+}\r\nse\"cr\\\r\n",
      "b1 SELECT INBOX\r\n",
      "b2 SELECT \"Sent Items\" (CONDSTORE)\r\n",
      "b3 EXAMINE {6}\r\nDrafts\r\n",
      "b4 CREATE foo/bar\r\n",
      "b4 CREATE Sent (USE (\\Sent \\Archive))\r\n",
      "b5 DELETE \"a\\\\b\"\r\n",
      "b6 RENAME old \"new name\"\r\n",
      "b7 SUBSCRIBE &U,BTFw-\r\n",
      "b8 UNSUBSCRIBE \"\"\r\n",
      "b9 LIST \"\" *\r\n",
      "c1 LIST \"\" %/]\r\n",
      "c2 LIST (SUBSCRIBED) \"\" (\"INBOX\" \"Sent*\") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n",
      "c3 LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n",
      "c4 LSUB \"\" \"*\"\r\n",
      "c5 STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ)\r\n",
      "c6 APPEND INBOX {11}\r\nHello World\r\n",
      "c7 APPEND Drafts (\\Seen \\Draft $Label) \" 5-Feb-2024 13:01:02 +0100\" {3+}\r\nabc\r\n",
      "c8 APPEND INBOX {2}\r\nhi (\\Flagged) {3}\r\nbye \"05-Feb-2024 00:00:00 -0830\" ~{3}\r\na\0b\r\n"s,
      "c9 CHECK\r\n",
      "d1 CLOSE\r\n",
      "d2 UNSELECT\r\n",
      "d3 EXPUNGE\r\n",
      "d4 UID EXPUNGE 1:5,9\r\n",
      "d5 SEARCH ALL\r\n",
      "d6 SEARCH CHARSET UTF-8 SUBJECT {4+}\r\n\xc3\xa9t\xc3\r\n",
      "d7 UID SEARCH RETURN (MIN MAX COUNT ALL) OR (FROM alice SINCE 1-Feb-2024) NOT "
      "(SEEN UID 1:*) HEADER X-Spam \"yes\" LARGER 1000 SMALLER 99999 1:5,*\r\n",
      "d8 SEARCH RETURN () ANSWERED BCC b BEFORE \"01-Jan-2000\" BODY x CC c DELETED "
      "DRAFT FLAGGED KEYWORD $Junk NEW OLD ON 29-Feb-2024 RECENT SEEN SENTBEFORE "
      "1-Jan-2020 SENTON 2-Jan-2020 SENTSINCE 3-Jan-2020 TEXT t TO u UNANSWERED "
      "UNDELETED UNDRAFT UNFLAGGED UNKEYWORD foo UNSEEN\r\n",
      "d9 SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n",
      "e1 SEARCH MODSEQ 0\r\n",
      "e2 FETCH 1:* ALL\r\n",
      "e3 FETCH 1 FAST\r\n",
      "e4 FETCH 2:4 FULL\r\n",
      "e5 FETCH * (ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE "
      "RFC822.TEXT BODY BODYSTRUCTURE UID MODSEQ)\r\n",
      "e6 UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (From To \"Subject\")] BODY[]<0.100>) "
      "(CHANGEDSINCE 12345)\r\n",
      "e7 FETCH 1 (BODY[1.2.3] BODY[1.MIME] BODY[2.HEADER] BODY[TEXT] "
      "BODY[1.HEADER.FIELDS.NOT (Received)] BINARY[1]<5.10> BINARY.PEEK[] "
      "BINARY.SIZE[2])\r\n",
      "e8 FETCH 5:3 body[header]\r\n",
      "p1 UID FETCH 1:* (SAVEDATE PREVIEW (LAZY) PREVIEW) (CHANGEDSINCE 7)\r\n",
      "p2 FETCH 2 PREVIEW (LAZY)\r\n",
      "s1 UID SORT (REVERSE ARRIVAL) UTF-8 ALL\r\n",
      "s2 SORT (SUBJECT REVERSE DATE cc FROM SIZE TO DISPLAYFROM REVERSE DISPLAYTO) "
      "US-ASCII SEEN 1:5 FROM \"a b\"\r\n",
      "s3 UID THREAD REFERENCES UTF-8 ALL\r\n",
      "s4 THREAD orderedsubject \"UTF-8\" NOT DELETED\r\n",
      "s5 UID SORT RETURN (MIN MAX COUNT PARTIAL 1:50 UPDATE CONTEXT) (DATE) UTF-8 ALL\r\n",
      "s6 SEARCH RETURN (partial 9:3 SAVE) UNSEEN\r\n",
      "s7 CANCELUPDATE \"s5\" \"x y\"\r\n",
      "p3 SEARCH SAVEDBEFORE 1-Feb-2024 NOT SAVEDON 2-Feb-2024 OR SAVEDSINCE 3-Feb-2024 "
      "SAVEDATESUPPORTED\r\n",
      "e9 STORE 1:3 +FLAGS (\\Deleted)\r\n",
      "f1 STORE 1 FLAGS.SILENT ()\r\n",
      "f2 UID STORE 7 (UNCHANGEDSINCE 320162338) -FLAGS.SILENT (\\Seen $Work)\r\n",
      "f3 STORE 2 +FLAGS \\Seen \\Flagged\r\n",
      "f4 COPY 1:2 \"Saved Mail\"\r\n",
      "f5 UID COPY 4294967295 Trash\r\n",
      "f6 MOVE 3 Archive\r\n",
      "f7 UID MOVE 1:* {3+}\r\nA\"B\r\n",
      "f8 IDLE\r\n",
      "f9 ENABLE CONDSTORE UTF8=ACCEPT\r\n",
      "g1 NAMESPACE\r\n",
      "g2 ID NIL\r\n",
      "g3 ID (\"name\" \"Thunderbird\" \"version\" NIL)\r\n",
      "g4 ID ()\r\n",
      "g5 UID SEARCH UID 1:10 MODSEQ 5\r\n",
      "g6 COMPRESS DEFLATE\r\n",
      "q1 GETQUOTA \"\"\r\n",
      "q2 GETQUOTAROOT INBOX\r\n",
      "q3 SETQUOTA \"\" (STORAGE 512 MESSAGE 1000)\r\n",
      "q4 SETQUOTA root ()\r\n",
      "q5 STATUS INBOX (DELETED DELETED-STORAGE)\r\n",
      "m1 GETMETADATA \"\" (/shared/comment)\r\n",
      "m2 GETMETADATA (MAXSIZE 1024 DEPTH infinity) INBOX (/private/comment /shared/vendor)\r\n",
      "m3 SETMETADATA INBOX (/private/comment \"hello\" /shared/comment NIL)\r\n",
      "n1 NOTIFY NONE\r\n",
      "n2 NOTIFY SET STATUS (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange)) "
      "(MAILBOXES (INBOX \"Sent Items\") (MessageNew MessageExpunge))\r\n",
      "n3 notify set (subtree Lists (messagenew messageexpunge flagchange)) (personal NONE) "
      "(inboxes (MailboxName))\r\n",
  };
}

}  // namespace imap::testing
