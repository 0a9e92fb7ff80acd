"""Making training data: a synthetic storm-resolving atmosphere and
preparation of dataset stores from real sources."""
