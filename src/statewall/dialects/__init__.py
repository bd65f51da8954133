"""Configuration dialects: each parses its own language into statewall.policy.Policy and prints it back."""
