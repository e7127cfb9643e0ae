"""Local fakes of third-party AI services, speaking their documented wire formats."""
