"""Fakes of third-party services speaking their real wire protocols, shared by the tests."""
