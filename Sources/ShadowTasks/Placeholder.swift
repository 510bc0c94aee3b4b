// Task readers arrive in their own commits.
