"""Request corpora the managed ruleset is measured against.

- The OWASP CRS regression tests (go-ftw YAML), read in place from a checkout: each test stage
  whose CRS rule has paranoia level N is an attack `CorpusCase` of that rule's family.
- The benign corpus: JSON lines of realistic requests that must not be blocked, in the corpus
  format of `failsmall verify`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from failsmall.build.corpus import CorpusError, parse_line, read_corpus
from failsmall.engine.request import Request

# libyaml's loader when PyYAML was built with it: the corpus is a few megabytes of YAML.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: CRS request rule files by family number, with the family's short name.
FAMILIES: dict[str, str] = {
    "930": "LFI",
    "931": "RFI",
    "932": "RCE",
    "933": "PHP",
    "934": "generic",
    "941": "XSS",
    "942": "SQLi",
    "944": "Java",
}


@dataclass(frozen=True, slots=True)
class CorpusCase:
    """One attack request from the CRS regression tests."""

    family: str
    rule_id: str
    test_id: str
    paranoia_level: int
    expects_detection: bool
    request: Request

    @property
    def name(self) -> str:
        return f"{self.rule_id}-{self.test_id}"


def rule_paranoia_levels(corpus_dir: Path) -> dict[str, int]:
    """Rule id -> paranoia level, from the corpus' `rules-index.tsv` (control rules omitted)."""
    index = corpus_dir / "rules-index.tsv"
    if not index.is_file():
        raise CorpusError(f"{index} is missing: is {corpus_dir} a crs-regression corpus?")
    levels: dict[str, int] = {}
    for line in index.read_text(encoding="utf-8").splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) >= 2 and fields[1].strip().isdigit():
            levels[fields[0].strip()] = int(fields[1])
    return levels


def crs_cases(
    corpus_dir: Path, families: tuple[str, ...] = tuple(FAMILIES)
) -> Iterator[CorpusCase]:
    """Every test stage of the request rule files of `families`, in file order."""
    levels = rule_paranoia_levels(corpus_dir)
    for family in families:
        for directory in sorted(corpus_dir.glob(f"REQUEST-{family}-*")):
            for path in sorted(directory.glob("*.yaml")):
                yield from _file_cases(family, path, levels)


def _file_cases(family: str, path: Path, levels: dict[str, int]) -> Iterator[CorpusCase]:
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise CorpusError(f"{path}: not valid YAML: {exc}") from exc
    rule_id = str(document.get("rule_id", path.stem))
    level = levels.get(rule_id, 0)
    for test in document.get("tests") or []:
        for number, stage in enumerate(test.get("stages") or [], start=1):
            stage_input = stage.get("input") or {}
            log = (stage.get("output") or {}).get("log") or {}
            test_id = str(test.get("test_id", "?"))
            if number > 1:
                test_id += f".{number}"
            yield CorpusCase(
                family=family,
                rule_id=rule_id,
                test_id=test_id,
                paranoia_level=level,
                expects_detection=bool(log.get("expect_ids")),
                request=ftw_request(stage_input),
            )


def ftw_request(stage_input: dict[str, object]) -> Request:
    """A go-ftw test input (method, uri, headers, data, or encoded_request) as a Request."""
    encoded = stage_input.get("encoded_request")
    if isinstance(encoded, str) and encoded.strip():
        try:
            raw = base64.b64decode("".join(encoded.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CorpusError(f"encoded_request is not base64: {exc}") from exc
        return raw_http_request(raw)
    headers = stage_input.get("headers") or {}
    pairs: list[tuple[str, str]] = []
    if isinstance(headers, dict):
        pairs = [(str(k), str(v)) for k, v in headers.items()]
    elif isinstance(headers, list):
        pairs = [(str(item[0]), str(item[1])) for item in headers if len(item) == 2]
    data = stage_input.get("data")
    body = b""
    if isinstance(data, str):
        body = data.encode("utf-8", errors="surrogateescape")
    elif isinstance(data, list):
        body = "".join(str(line) for line in data).encode("utf-8")
    method = stage_input.get("method")
    uri = stage_input.get("uri")
    return make_request(
        method=str(method) if method else "GET",
        uri=str(uri) if uri else "/",
        headers=tuple(pairs),
        body=body,
    )


def raw_http_request(raw: bytes) -> Request:
    """Parse a raw HTTP/1.x request (request line, headers, body) into a Request."""
    head, _, body = raw.partition(b"\r\n\r\n")
    if not _:
        head, _, body = raw.partition(b"\n\n")
    lines = head.decode("latin-1").splitlines()
    if not lines:
        raise CorpusError("encoded_request has no request line")
    parts = lines[0].split(" ")
    method = parts[0] if parts else "GET"
    uri = parts[1] if len(parts) > 1 else "/"
    headers = tuple(
        (name.strip(), value.strip())
        for name, sep, value in (line.partition(":") for line in lines[1:])
        if sep
    )
    return make_request(method=method, uri=uri, headers=headers, body=body)


def make_request(
    method: str,
    uri: str,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    client_ip: str = "127.0.0.1",
) -> Request:
    """A Request from a request line's parts, parsed as a corpus line would be."""
    record = {
        "method": method,
        "uri": uri or "/",
        "headers": [[name, value] for name, value in headers],
        "body_b64": base64.b64encode(body).decode("ascii"),
        "client_ip": client_ip,
    }
    return parse_line(record, f"{method} {uri}")[0]


def benign_requests(path: Path) -> Iterator[Request]:
    """The requests of a JSONL corpus file, or of every `*.jsonl` file in a directory.

    Lines are read by `failsmall.build.corpus` (the format `failsmall verify` takes).
    """
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    for file in files:
        yield from read_corpus(file)


#: The blazehttp test cases usable for tuning: those whose first directory's name begins with
#: one of these hex digits. The cases under 8-f are a held-out evaluation set: never read.
BLAZEHTTP_TUNING_PREFIXES = frozenset("01234567")


@dataclass(frozen=True, slots=True)
class LabelledRequest:
    """One request of a labelled corpus: an attack (`.black`) or legitimate (`.white`)."""

    name: str
    attack: bool
    request: Request


def blazehttp_cases(testcases_dir: Path) -> Iterator[LabelledRequest]:
    """The tuning half of the blazehttp corpus (chaitin/blazehttp, `testcases/`), in name order.

    Each `.white` (legitimate) or `.black` (attack) file holds one raw HTTP/1.1 request. Only
    cases under a first directory whose name begins with 0-7 are read (see
    `BLAZEHTTP_TUNING_PREFIXES`). Raises CorpusError when the directory holds no such case.
    """
    if not testcases_dir.is_dir():
        raise CorpusError(
            f"blazehttp test cases not found at {testcases_dir}: pass the `testcases` directory "
            "of a chaitin/blazehttp checkout"
        )
    found = False
    for first in sorted(testcases_dir.iterdir()):
        if not first.is_dir() or first.name[:1] not in BLAZEHTTP_TUNING_PREFIXES:
            continue
        for path in sorted(first.rglob("*")):
            if path.suffix not in (".white", ".black") or not path.is_file():
                continue
            found = True
            name = str(path.relative_to(testcases_dir))
            try:
                request = raw_http_request(path.read_bytes())
            except CorpusError as exc:
                raise CorpusError(f"{path}: {exc}") from exc
            yield LabelledRequest(name, path.suffix == ".black", request)
    if not found:
        raise CorpusError(
            f"{testcases_dir} holds no .white or .black case under a directory 00-7f: is it "
            "the `testcases` directory of chaitin/blazehttp?"
        )
