"""Small exception hierarchy: every error the node raises on purpose derives from IchnodeError."""


class IchnodeError(Exception):
    """Base class."""


class ConfigError(IchnodeError):
    """The configuration file is invalid; the message names the file, the key and the bad value."""


class NotEligible(IchnodeError):
    """A series cannot be analysed; the message is the human-readable reason put into the SR."""


class IllegalTransition(IchnodeError):
    """A job state change that the state machine does not allow."""


class DeliveryError(IchnodeError):
    """An outbound delivery did not go through. retry False: the destination refused it for good
    (an HL7 AR, an HTTP 4xx); ack_code: the destination's answer, when it gave one."""

    def __init__(self, message: str, retry: bool = True, ack_code: str | None = None):
        super().__init__(message)
        self.retry, self.ack_code = retry, ack_code


class SendError(DeliveryError):
    """A DICOM destination refused or could not be reached."""


class DuplicateInstance(IchnodeError):
    """A SOP Instance UID the job store already holds under another series."""
