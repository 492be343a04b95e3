"""Protocol-level fakes of outside services (X API v2, ...) served on 127.0.0.1 for tests."""
