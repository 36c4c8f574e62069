"""The sales domain without the store: leads, phone and email normalization, matching
people, name and company similarity, and who gets a new deal."""
