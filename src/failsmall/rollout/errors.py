"""Errors raised by the rollout core. Each message says what was wrong and what to do."""


class RolloutError(Exception):
    """Base class of every rollout error."""


class ClassDowngradeError(RolloutError):
    """A bundle was declared with a change class less strict than its semantic diff shows."""


class NoChangeError(RolloutError):
    """The new bundle is identical to the current one: there is nothing to roll out."""


class UnknownPolicyError(RolloutError):
    """A policy name that is not one of the named policies."""


class PolicyError(RolloutError):
    """A policy whose waves or thresholds are inconsistent."""


class EmptySelectionError(RolloutError):
    """A command or rollout would address no node at all.

    An empty selection never means "every node" (the 2026-02-20 cleanup incident).
    """


class InvalidTransitionError(RolloutError):
    """An operator event that the rollout's current state does not accept."""


class RolloutConflictError(RolloutError):
    """A rollout was started while another one is still active on the same fleet."""


class StateFormatError(RolloutError):
    """A persisted rollout, event or command could not be decoded."""
