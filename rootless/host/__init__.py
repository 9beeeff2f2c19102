"""What this host lets an unprivileged user do, found out by trying."""
