"""Signature matching: transforms, request targets and the hyperscan multi-pattern scanner."""

from failsmall.engine.signatures.scanner import (
    SignatureCompileError,
    SignatureScanner,
    memo_bytes,
)
from failsmall.engine.signatures.targets import target_values
from failsmall.engine.signatures.transforms import TRANSFORMS, chain

__all__ = [
    "TRANSFORMS",
    "SignatureCompileError",
    "SignatureScanner",
    "chain",
    "memo_bytes",
    "target_values",
]
