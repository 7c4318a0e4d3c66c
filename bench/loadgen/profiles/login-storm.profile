# Login storm: every connection is a TLS handshake (run with --tls), the greeting,
# LOGIN, one NOOP and LOGOUT, then the client reconnects at once. Measures handshakes
# plus logins per second; the password hash cost dominates, so compare servers only
# at the same hash cost.
[client]
name = login-storm
think = 0
groups_per_session = 1

[connect]
login

[mix]
1 noop

[disconnect]
logout
