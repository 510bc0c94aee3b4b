// Evaluation arrives in its own commits.
