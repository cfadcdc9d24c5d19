"""The base class of every configuration object: strict, immutable, unknown fields rejected."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A configuration object: unknown fields are errors and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, validate_default=True)
