class BrokerError(RuntimeError):
    """A broker could not be installed, started or stopped; the message is one line meant for the user."""
