"""Small exception hierarchy: every error the node raises on purpose derives from IchnodeError."""


class IchnodeError(Exception):
    """Base class."""


class ConfigError(IchnodeError):
    """The configuration file is invalid; the message names the file, the key and the bad value."""


class NotEligible(IchnodeError):
    """A series cannot be analysed; the message is the human-readable reason put into the SR."""


class IllegalTransition(IchnodeError):
    """A job state change that the state machine does not allow."""


class SendError(IchnodeError):
    """A destination refused or could not be reached."""


class DuplicateInstance(IchnodeError):
    """A SOP Instance UID the job store already holds under another series."""
