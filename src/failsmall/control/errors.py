"""Errors of the control plane's services; the API turns each into a 4xx/5xx JSON answer."""


class BadInputError(Exception):
    """A request that cannot be acted on as sent; the message says what to fix."""


class BundleRejectedError(Exception):
    """A bundle that is well-formed but must not be rolled out (engine build or verify failed).

    `problems` lists every reason.
    """

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message + ": " + "; ".join(problems))
        self.problems = problems


class NotFoundError(Exception):
    """The named bundle, rollout, rule or token does not exist."""
