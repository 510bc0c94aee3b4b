// Criteria, calibration and predictors arrive in their own commits.
