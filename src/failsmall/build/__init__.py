"""Authoring to bundle: load YAML, validate, compile with the real engine, verify, sign."""

from failsmall.build.artifact import BuildError, build_bundle, read_bundle_file, write_bundle_file
from failsmall.build.corpus import CorpusError, read_corpus, read_corpus_cases
from failsmall.build.keys import KeyFileError, generate_keypair, read_private_key, read_public_keys
from failsmall.build.loader import ConfigError, ConfigProblem, load_config_dir
from failsmall.build.verify import VerifyReport, verify_bundle

__all__ = [
    "BuildError",
    "ConfigError",
    "ConfigProblem",
    "CorpusError",
    "KeyFileError",
    "VerifyReport",
    "build_bundle",
    "generate_keypair",
    "load_config_dir",
    "read_bundle_file",
    "read_corpus",
    "read_corpus_cases",
    "read_private_key",
    "read_public_keys",
    "verify_bundle",
    "write_bundle_file",
]
