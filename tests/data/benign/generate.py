"""Generate the benign request corpus (`benign.jsonl`) deterministically.

    python tests/data/benign/generate.py            # writes tests/data/benign/benign.jsonl

Requests are templated but drawn from many shapes: page and asset loads with real browser
headers, search queries (some about SQL and shells), urlencoded forms with punctuation and
apostrophes, JSON APIs, GraphQL, multipart uploads, comment fields holding code snippets and
prose, rich-text (HTML) posts, OAuth redirects, support tickets with file paths, long cookies
and JWTs, webhooks, and text in many languages. The same seed always yields the same file.
"""

from __future__ import annotations

import base64
import json
import random
import string
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus, urlencode

SEED = 20251203
HEX = "0123456789abcdef"
COUNT = 2500
OUT = Path(__file__).with_name("benign.jsonl")

BROWSERS = [
    {
        "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/131.0.0.0 Safari/537.36",
        "sec-ch-ua": '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
        "sec-ch-ua-mobile": "?0",
        "sec-ch-ua-platform": '"Windows"',
    },
    {
        "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    },
    {
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    },
    {
        "User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    },
    {
        "User-Agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/130.0.6723.107 Mobile Safari/537.36",
        "sec-ch-ua": '"Chromium";v="130", "Google Chrome";v="130", "Not?A_Brand";v="99"',
        "sec-ch-ua-mobile": "?1",
        "sec-ch-ua-platform": '"Android"',
    },
    {
        "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        "sec-ch-ua": '"Microsoft Edge";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
        "sec-ch-ua-mobile": "?0",
        "sec-ch-ua-platform": '"Windows"',
    },
]
API_CLIENTS = [
    "curl/8.5.0",
    "python-requests/2.32.3",
    "okhttp/4.12.0",
    "Go-http-client/2.0",
    "axios/1.7.7",
    "MyShopApp/5.12.1 (iOS 18.1; iPhone15,2)",
    "PostmanRuntime/7.42.0",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
]
LANGS = [
    "en-US,en;q=0.9",
    "en-GB,en;q=0.9,en-US;q=0.8",
    "de-DE,de;q=0.9,en;q=0.8",
    "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7",
    "ja-JP,ja;q=0.9,en;q=0.8",
    "pt-BR,pt;q=0.9,en;q=0.8",
    "es-ES,es;q=0.9",
    "ru-RU,ru;q=0.9,en;q=0.8",
    "zh-CN,zh;q=0.9",
    "ar-SA,ar;q=0.9,en;q=0.8",
]
HOSTS = ["shop.example.com", "www.example.org", "blog.example.net", "api.example.com"]
FIRST = [
    "Siobhán",
    "Seán",
    "Mary-Kate",
    "José",
    "Zoë",
    "Björn",
    "Renée",
    "Jean-Luc",
    "Anaïs",
    "Łukasz",
    "Mike",
    "Priya",
    "Chen",
    "Fatima",
    "Olu",
    "Hiroshi",
    "Ana",
    "Noah",
    "Emma",
    "D'Andre",
]
LAST = [
    "O'Brien",
    "O'Neill",
    "D'Angelo",
    "McDonald",
    "van der Berg",
    "Smith-Jones",
    "Müller",
    "Nuñez",
    "García López",
    "Nakamura",
    "Kowalski",
    "Dubois",
    "Ødegaard",
    "Al-Rashid",
    "N'Diaye",
    "Ng",
]
STREETS = [
    "12 Baker St., Apt #4",
    "1600 Amphitheatre Pkwy",
    "Flat 3/2, 221B Baker Street",
    "Rue de l'Église 5",
    "Königstraße 12a",
    "PO Box 1234",
    "55 O'Connell St. (rear entrance)",
    "3-2-1 Shibuya, Shibuya-ku",
    "Av. Paulista, 1578 - Bela Vista",
]
CITIES = ["Dublin", "London", "Paris", "München", "São Paulo", "東京", "New York, NY", "Kraków"]
PRODUCTS = [
    "Rock & Roll Hall of Fame T-shirt (XL)",
    "AT&T 5G router",
    "Ben & Jerry's Cookie Dough 500ml",
    "M&M's 1kg party bag",
    "Levi's 501® jeans 32/34",
    "Johnson & Johnson baby oil",
    "USB-C to USB-C cable 2m (100W)",
    '4K HDR monitor 27" IPS',
    "Dr. Martens 1460 boots",
    'Hand-made mug — "World\'s Best Dad"',
    "Kids' rain jacket, 5-6 yrs",
    "Café au lait beans 1/2 lb",
]
SEARCHES = [
    "rock & roll",
    "o'brien family history",
    "best pizza near me",
    "how to tie a tie",
    "c++ vs rust performance",
    "50% off shoes",
    "size 10 1/2 men's boots",
    "where's my order?",
    "return policy (30 days)",
    "what is 2+2",
    '"exact phrase" search',
    "email@example.com",
    "café crème brûlée recipe",
    "東京 ホテル 安い",
    "купить ноутбук",
    "مطاعم قريبة",
    "naïve bayes tutorial",
    "select a gift for mom",
    "union station chicago",
    "drop-down menu css",
    "script writing course",
    "order by price",
    "1/2 inch pipe fitting",
    "#hashtag ideas",
    "tom & jerry dvd",
    "is it 'affect' or 'effect'?",
    "100% cotton sheets",
    "java tutorial for beginners",
    "python list comprehension",
    "how to exit vim",
    "react useEffect cleanup",
    "sql join example",
    "weather tomorrow",
    "ß vs ss",
    "emoji 😀 meaning",
    "node.js streams",
    "alert me when price drops",
    "echo dot 5th gen",
    "cat toys",
    "ls 400 lexus",
    "the 'best' sci-fi books of 2024",
    "AC/DC Back in Black vinyl",
    "Guns N' Roses tickets",
    "dir en grey",
    "password manager comparison",
    "top 10 -- list",
    "sql union vs union all",
    "group by vs order by",
    "left join example",
    "what does 1=1 mean",
    "c# vs java",
    '"new york" -hotel site:example.com',
    "python OR ruby",
    "5' 11\" in cm",
    "<3 emoji",
    "a && b || c precedence",
    "usr/bin/env python shebang",
    "cmd /c start chrome",
    "curl vs wget",
    "how to cat two files",
]
COMMENTS = [
    "Great product! Would buy again :)",
    "Arrived late, but the support team (thanks Siobhán!) sorted it out.",
    "Doesn't fit my 2019 model -- had to return it. 3/5.",
    "I'm not sure if this is the right place to ask, but does it work with 220V?",
    "Ordered 2 & received 3... honest customer here, how do I send one back?",
    "Five stars ★★★★★ — exactly as described.",
    "My son's favourite toy; he's 4 1/2 and loves it <3",
    "Price was $19.99 + $4.50 shipping = $24.49, fair enough.",
    "Le produit est arrivé en bon état, merci beaucoup !",
    "Sehr gute Qualität, schnelle Lieferung. Gerne wieder!",
    "とても良い商品でした。また購入したいです。",
    "Отличный товар, рекомендую!",
    "Can you add a 'dark mode'? My eyes would thank you ;-)",
    'The instructions say "tighten until snug" -- what does that mean exactly??',
    "Re: order #12345 — still waiting. Please advise.",
    "If you're in the UK, note that the plug is type C/F; you'll need an adapter.",
    "I selected express delivery but got standard. Not happy.",
    "Question: is the union of both kits compatible with the older frame?",
    "Drop me a line at jane.doe+shop@example.com if you have updates.",
    "Worked fine for 6 months, then the screen went black. Warranty claim #A-77.",
    "I'm 5' 11\" and the 32\" inseam fits perfectly -> 5/5",
    'Frame is 12" x 18" (30 x 45 cm); the 1/2" mat looks great.',
    "Love it <3 but the strap broke >:( after a week...",
    "Step 1 => unbox, step 2 => charge, step 3 => profit ;)",
    "Shipping was 3-5 days; tracking said 'delivered' but it wasn't.",
    "Bought it for my dad's b-day -- he says it's 'the best gift ever' (his words!).",
    "Email me at jane+orders@example.com or call +1 (555) 010-9999 ext. 12.",
    "Is the 'XL' really XL? My usual size is L/XL -- between the two.",
]
CODE_SNIPPETS = [
    'Try this:\n\n```python\nfor i, item in enumerate(items):\n    print(f"{i}: {item}")\n```',
    "You can use `const total = cart.items.reduce((sum, i) => sum + i.price, 0);`",
    'In bash: `for f in *.jpg; do convert "$f" "${f%.jpg}.png"; done` worked for me.',
    "```js\nfetchData().then(res => res.json()).then(data => setItems(data));\n```",
    "Use a dict comprehension: {k: v for k, v in pairs if v is not None}",
    "My regex was ^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$ and it rejected valid emails.",
    '```go\nif err != nil {\n    return fmt.Errorf("open config: %w", err)\n}\n```',
    "I fixed it with git rebase -i HEAD~3 and then git push --force-with-lease.",
    "```rust\nlet v: Vec<u32> = (1..=10).filter(|x| x % 2 == 0).collect();\n```",
    "Set `max_connections = 200` in the config and restart the service.",
    'In Excel: =IF(A2>100, "high", "low") then drag down.',
    "```java\nList<String> names = users.stream().map(User::getName).toList();\n```",
    "With pandas: df.groupby('region')['sales'].sum().sort_values(ascending=False)",
    "Kotlin: val nums = listOf(1, 2, 3).map { it * 2 }",
    "CSS trick: .card:hover { transform: translateY(-2px); box-shadow: 0 4px 8px rgba(0,0,0,.2); }",
    "```c\nwhile (i < n && buf[i] != '\\0') { i++; }\n```",
    "I had to run npm install --legacy-peer-deps to get past the conflict.",
    "Use ${HOME}/.config/app/settings.toml on Linux, %APPDATA% on Windows.",
    "Swift: guard let url = URL(string: link) else { return }",
    "Docker tip: docker compose up -d --build && docker compose logs -f web",
    "```js\nimport { useState } from 'react';\nconst [count, setCount] = useState(0);\n```",
    "Debug with console.log(JSON.stringify(order, null, 2)) right before the fetch.",
    "```python\nimport os\npath = os.path.join(base_dir, 'static', 'img')\n```",
]
TOPICS = ["billing", "shipping", "returns", "technical", "other", "partnership"]
PAGES = [
    "/",
    "/products",
    "/products/rock-and-roll-tee",
    "/category/shoes",
    "/blog/2024/11/black-friday",
    "/about-us",
    "/help/returns",
    "/cart",
    "/checkout/shipping",
    "/account/orders",
    "/search",
    "/de/produkte/kaffee",
    "/ja/商品/コーヒー",
    "/blog/why-we-love-o-brien-coffee",
    "/docs/api/v2/getting-started",
    "/careers/senior-engineer-berlin",
    "/events/2025/summit",
]
ASSETS = [
    "/static/js/main.8f3a2c1b.js",
    "/static/css/app.3e4f.css",
    "/images/hero@2x.webp",
    "/fonts/inter-var.woff2",
    "/favicon.ico",
    "/static/js/vendor~chunk.92bd.js",
    "/images/products/mug_world's_best_dad.jpg",
    "/robots.txt",
    "/sitemap.xml",
    "/manifest.webmanifest",
    "/.well-known/security.txt",
    "/apple-touch-icon.png",
]


def _token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _jwt(rng: random.Random) -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    header = part({"alg": "RS256", "typ": "JWT", "kid": _token(rng, 8)})
    body = part(
        {
            "sub": str(rng.randint(10**5, 10**9)),
            "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            "iat": 1732600000 + rng.randint(0, 10**6),
            "scope": "read:orders write:cart",
        }
    )
    signature = _token(rng, 86, string.ascii_letters + string.digits + "-_")
    return f"{header}.{body}.{signature}"


def _cookies(rng: random.Random) -> str:
    consent = base64.b64encode(
        json.dumps(
            {"necessary": True, "analytics": rng.random() < 0.5, "ts": rng.randint(1, 10**9)}
        ).encode()
    ).decode()
    parts = [
        f"_ga=GA1.1.{rng.randint(10**8, 10**9)}.{rng.randint(1700000000, 1732000000)}",
        f"_ga_{_token(rng, 10).upper()}=GS1.1.{rng.randint(10**9, 2 * 10**9)}.4.1."
        f"{rng.randint(10**9, 2 * 10**9)}.0.0.0",
        f"session={_token(rng, rng.choice([32, 48, 64]))}",
        f"cookie_consent={quote(consent)}",
        f"cart=%7B%22items%22%3A{rng.randint(0, 9)}%2C%22currency%22%3A%22EUR%22%7D",
        f"theme={rng.choice(['dark', 'light', 'system'])}",
        f"csrftoken={_token(rng, 32)}",
        "recently_viewed="
        + quote(",".join(str(rng.randint(1000, 9999)) for _ in range(rng.randint(1, 8)))),
        f"AWSALB={_token(rng, 120, string.ascii_letters + string.digits + '+/')}",
        f"lang={rng.choice(['en', 'de', 'fr', 'ja', 'pt-BR'])}",
    ]
    if rng.random() < 0.4:
        parts.append(f"auth_token={_jwt(rng)}")
    rng.shuffle(parts)
    return "; ".join(parts[: rng.randint(2, len(parts))])


def _browser_headers(rng: random.Random, host: str, accept: str, referer: bool) -> dict[str, str]:
    headers = {"Host": host, **rng.choice(BROWSERS)}
    headers["Accept"] = accept
    headers["Accept-Language"] = rng.choice(LANGS)
    headers["Accept-Encoding"] = "gzip, deflate, br, zstd"
    if referer:
        headers["Referer"] = f"https://{host}{rng.choice(PAGES)}" + (
            f"?q={quote_plus(rng.choice(SEARCHES))}" if rng.random() < 0.3 else ""
        )
    if rng.random() < 0.8:
        headers["Cookie"] = _cookies(rng)
    headers["Sec-Fetch-Site"] = rng.choice(["same-origin", "none", "same-site", "cross-site"])
    headers["Sec-Fetch-Mode"] = "navigate"
    headers["Sec-Fetch-Dest"] = "document"
    if rng.random() < 0.5:
        headers["Upgrade-Insecure-Requests"] = "1"
    if rng.random() < 0.3:
        headers["If-None-Match"] = f'W/"{_token(rng, 16, "0123456789abcdef")}"'
    return headers


HTML_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)


def page_view(rng: random.Random) -> dict[str, object]:
    host = rng.choice(HOSTS[:3])
    path = rng.choice(PAGES)
    query: list[tuple[str, str]] = []
    if rng.random() < 0.5:
        query.append(("utm_source", rng.choice(["newsletter", "google", "facebook", "t.co"])))
        query.append(("utm_campaign", rng.choice(["black_friday_2024", "spring-sale", "q4 promo"])))
    if rng.random() < 0.3:
        query.append(("page", str(rng.randint(1, 40))))
        query.append(("sort", rng.choice(["price_asc", "-created_at", "relevance", "name,asc"])))
    if rng.random() < 0.15:
        query.append(
            ("ref", f"https://{rng.choice(HOSTS)}/landing?src=email&id={rng.randint(1, 999)}")
        )
    if rng.random() < 0.1:
        query.append(("gclid", _token(rng, 40, string.ascii_letters + string.digits + "-_")))
    uri = path + ("?" + urlencode(query) if query else "")
    return {
        "method": "GET",
        "uri": quote(uri, safe="/?&=%+,-_.~"),
        "headers": _browser_headers(rng, host, HTML_ACCEPT, rng.random() < 0.7),
    }


def asset(rng: random.Random) -> dict[str, object]:
    host = rng.choice(HOSTS[:3])
    path = rng.choice(ASSETS)
    headers = _browser_headers(rng, host, "*/*", True)
    headers["Sec-Fetch-Mode"] = "no-cors"
    headers["Sec-Fetch-Dest"] = rng.choice(["script", "style", "image", "font"])
    version = f"?v={rng.randint(1, 500)}" if rng.random() < 0.4 else ""
    return {"method": "GET", "uri": quote(path, safe="/") + version, "headers": headers}


def search(rng: random.Random) -> dict[str, object]:
    host = rng.choice(HOSTS[:3])
    params = [("q", rng.choice(SEARCHES))]
    if rng.random() < 0.4:
        params.append(("category", rng.choice(["all", "books & media", "home/garden", "kids'"])))
    if rng.random() < 0.3:
        params.append(("price", f"{rng.randint(0, 50)}-{rng.randint(51, 500)}"))
    if rng.random() < 0.2:
        params.append(("filter[brand][]", rng.choice(["Levi's", "Dr. Martens", "Ben & Jerry's"])))
    return {
        "method": "GET",
        "uri": "/search?" + urlencode(params),
        "headers": _browser_headers(rng, host, HTML_ACCEPT, True),
    }


def _form_headers(rng: random.Random, host: str, content_type: str) -> dict[str, str]:
    headers = _browser_headers(rng, host, HTML_ACCEPT, True)
    headers["Content-Type"] = content_type
    headers["Origin"] = f"https://{host}"
    headers["Sec-Fetch-Mode"] = "navigate"
    return headers


def contact_form(rng: random.Random) -> dict[str, object]:
    host = rng.choice(HOSTS[:3])
    first, last = rng.choice(FIRST), rng.choice(LAST)
    fields = [
        ("name", f"{first} {last}"),
        ("email", f"{first.lower().replace(chr(39), '')}.{rng.randint(1, 99)}@example.com"),
        (
            "phone",
            rng.choice(["+353 1 234 5678", "(555) 123-4567", "+49 (0)30 1234567", "07700 900123"]),
        ),
        ("topic", rng.choice(TOPICS)),
        ("message", rng.choice(COMMENTS + CODE_SNIPPETS[:5])),
        ("csrf_token", _token(rng, 40)),
    ]
    if rng.random() < 0.3:
        fields.append(("subscribe", "on"))
    return {
        "method": "POST",
        "uri": "/contact",
        "headers": _form_headers(rng, host, "application/x-www-form-urlencoded"),
        "body": urlencode(fields),
    }


def checkout_form(rng: random.Random) -> dict[str, object]:
    host = HOSTS[0]
    fields = [
        ("shipping[first_name]", rng.choice(FIRST)),
        ("shipping[last_name]", rng.choice(LAST)),
        ("shipping[address1]", rng.choice(STREETS)),
        ("shipping[city]", rng.choice(CITIES)),
        ("shipping[postcode]", rng.choice(["D02 X285", "SW1A 1AA", "75001", "80331", "01310-200"])),
        ("shipping[country]", rng.choice(["IE", "GB", "FR", "DE", "BR", "JP", "US"])),
        (
            "delivery_notes",
            rng.choice(
                [
                    "Leave with neighbour at #12",
                    "Ring twice; dog's friendly!",
                    "",
                    "Gate code: 4#21*",
                ]
            ),
        ),
        (
            "gift_message",
            rng.choice(
                [
                    "Happy birthday, love from Mum & Dad x",
                    "",
                    "Congrats on the new job!!! :D",
                    "Merry Xmas -- see you soon",
                ]
            ),
        ),
        ("coupon", rng.choice(["", "SAVE-10", "BF2024", "WELCOME_5"])),
        ("accept_terms", "1"),
    ]
    return {
        "method": "POST",
        "uri": "/checkout/shipping",
        "headers": _form_headers(rng, host, "application/x-www-form-urlencoded"),
        "body": urlencode(fields),
    }


def comment_post(rng: random.Random) -> dict[str, object]:
    host = HOSTS[2]
    text = rng.choice(CODE_SNIPPETS + COMMENTS) if rng.random() < 0.6 else rng.choice(COMMENTS)
    fields = [
        ("author", f"{rng.choice(FIRST)} {rng.choice(LAST)}"),
        ("comment", text),
        ("post_id", str(rng.randint(1, 5000))),
        ("parent_id", rng.choice(["", str(rng.randint(1, 90000))])),
    ]
    if rng.random() < 0.5:
        return {
            "method": "POST",
            "uri": f"/blog/{rng.randint(2015, 2025)}/{rng.randint(1, 12):02d}"
            f"/post-{rng.randint(1, 999)}/comments",
            "headers": _form_headers(rng, host, "application/x-www-form-urlencoded"),
            "body": urlencode(fields),
        }
    headers = _api_headers(rng, host, browser=True)
    return {
        "method": "POST",
        "uri": f"/api/posts/{rng.randint(1, 5000)}/comments",
        "headers": headers,
        "body": json.dumps(dict(fields), ensure_ascii=rng.random() < 0.5),
    }


def _api_headers(rng: random.Random, host: str, browser: bool) -> dict[str, str]:
    if browser:
        headers = _browser_headers(rng, host, "application/json, text/plain, */*", True)
        headers["Sec-Fetch-Mode"] = "cors"
        headers["Sec-Fetch-Dest"] = "empty"
        headers["X-Requested-With"] = "XMLHttpRequest"
    else:
        headers = {
            "Host": host,
            "User-Agent": rng.choice(API_CLIENTS),
            "Accept": "application/json",
        }
        headers["Authorization"] = rng.choice(
            [
                f"Bearer {_jwt(rng)}",
                f"Bearer {_token(rng, 40)}",
                "Basic " + base64.b64encode(b"svc-reporting:" + _token(rng, 20).encode()).decode(),
            ]
        )
    headers["Content-Type"] = "application/json"
    if rng.random() < 0.5:
        headers["X-Request-ID"] = (
            f"{_token(rng, 8, HEX)}-{_token(rng, 4, HEX)}-4{_token(rng, 3, HEX)}"
        )
    return headers


def json_api(rng: random.Random) -> dict[str, object]:
    host = HOSTS[3]
    kind = rng.randrange(5)
    if kind == 0:
        body: object = {
            "items": [
                {
                    "sku": f"SKU-{rng.randint(1000, 9999)}",
                    "qty": rng.randint(1, 5),
                    "name": rng.choice(PRODUCTS),
                }
                for _ in range(rng.randint(1, 4))
            ],
            "currency": rng.choice(["EUR", "USD", "GBP", "JPY"]),
            "coupon": rng.choice([None, "SAVE-10", "BF2024"]),
            "notes": rng.choice(COMMENTS),
        }
        uri, method = "/v2/orders", "POST"
    elif kind == 1:
        body = {
            "first_name": rng.choice(FIRST),
            "last_name": rng.choice(LAST),
            "address": {"line1": rng.choice(STREETS), "city": rng.choice(CITIES), "country": "IE"},
            "preferences": {
                "newsletter": rng.random() < 0.5,
                "language": rng.choice(["en", "de", "ja"]),
            },
            "bio": rng.choice(COMMENTS + CODE_SNIPPETS),
        }
        uri, method = f"/v2/users/{rng.randint(1, 10**6)}", rng.choice(["PUT", "PATCH"])
    elif kind == 2:
        body = {
            "events": [
                {
                    "type": rng.choice(["page_view", "add_to_cart", "click", "scroll"]),
                    "ts": 1732600000000 + rng.randint(0, 10**8),
                    "url": f"https://{HOSTS[0]}{rng.choice(PAGES)}",
                    "props": {
                        "button": rng.choice(["Buy now", "Add to cart", "Don't show again"]),
                        "depth": rng.randint(0, 100),
                    },
                }
                for _ in range(rng.randint(1, 6))
            ]
        }
        uri, method = "/v1/collect", "POST"
    elif kind == 3:
        body = {
            "id": f"evt_{_token(rng, 24)}",
            "object": "event",
            "type": rng.choice(["payment_intent.succeeded", "charge.refunded", "customer.updated"]),
            "data": {
                "object": {
                    "id": f"pi_{_token(rng, 24)}",
                    "amount": rng.randint(100, 100000),
                    "currency": "eur",
                    "description": rng.choice(PRODUCTS),
                    "metadata": {
                        "order_id": str(rng.randint(10**5, 10**6)),
                        "customer": rng.choice(LAST),
                    },
                }
            },
        }
        uri, method = "/webhooks/payments", "POST"
    else:
        body = {
            "query": rng.choice(SEARCHES),
            "filters": {"in_stock": True, "tags": ["sale", "new"]},
            "limit": 20,
            "offset": rng.randint(0, 200),
        }
        uri, method = "/v2/search", "POST"
    return {
        "method": method,
        "uri": uri,
        "headers": _api_headers(rng, host, browser=rng.random() < 0.5),
        "body": json.dumps(body, ensure_ascii=rng.random() < 0.3),
    }


GRAPHQL_QUERIES = [
    (
        "query GetProduct($id: ID!) {\n  product(id: $id) {\n    id\n    name\n"
        "    price { amount currency }\n"
        "    reviews(first: 5) { edges { node { rating body } } }\n  }\n}",
        lambda rng: {"id": f"gid://shop/Product/{rng.randint(1, 10**6)}"},
    ),
    (
        "mutation AddToCart($input: CartLineInput!) {\n  cartLinesAdd(input: $input) {\n"
        "    cart { id totalQuantity }\n    userErrors { field message }\n  }\n}",
        lambda rng: {
            "input": {
                "merchandiseId": f"gid://shop/Variant/{rng.randint(1, 10**6)}",
                "quantity": rng.randint(1, 3),
            }
        },
    ),
    (
        "query Search($q: String!, $first: Int = 10) {\n"
        "  search(query: $q, first: $first) {\n    totalCount\n"
        "    nodes { ... on Product { id title } ... on Article { id headline } }\n  }\n}",
        lambda rng: {"q": rng.choice(SEARCHES), "first": rng.choice([10, 20, 50])},
    ),
    (
        "query Me {\n  viewer {\n    login\n"
        "    orders(last: 3, orderBy: {field: CREATED_AT, direction: DESC}) {\n"
        "      nodes { id status total }\n    }\n  }\n}",
        lambda rng: {},
    ),
]


def graphql(rng: random.Random) -> dict[str, object]:
    query, variables = rng.choice(GRAPHQL_QUERIES)
    body = {
        "query": query,
        "variables": variables(rng),
        "operationName": query.split()[1].split("(")[0],
    }
    return {
        "method": "POST",
        "uri": "/graphql",
        "headers": _api_headers(rng, HOSTS[3], browser=rng.random() < 0.6),
        "body": json.dumps(body),
    }


UPLOADS = [
    (
        "avatar",
        "IMG_2024-11-03 14.22.51.jpg",
        "image/jpeg",
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01",
    ),
    ("avatar", "profile photo (1).png", "image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    (
        "document",
        "Invoice #2024-117 O'Brien.pdf",
        "application/pdf",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
    ),
    (
        "import",
        "contacts_export.csv",
        "text/csv",
        'name,email,notes\n"O\'Neill, Seán",sean@example.com,"likes rock & roll"\n'.encode(),
    ),
    ("attachment", "screenshot 2024-12-01 at 10.15.03.png", "image/png", b"\x89PNG\r\n\x1a\n"),
    (
        "resume",
        "CV_Zoë_Müller_2025.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        b"PK\x03\x04\x14\x00\x06\x00",
    ),
    (
        "data",
        "report-q3.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        b"PK\x03\x04\x14\x00",
    ),
    (
        "notes",
        "meeting notes.txt",
        "text/plain",
        b"Agenda:\n1) budget (Q1 & Q2)\n2) hiring -- 2 roles\n3) AOB\n",
    ),
]


def upload(rng: random.Random) -> dict[str, object]:
    boundary = "----WebKitFormBoundary" + _token(rng, 16)
    field, filename, content_type, content = rng.choice(UPLOADS)
    payload = content + bytes(rng.randrange(256) for _ in range(rng.randint(64, 1024)))
    parts = [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\n'
            f"{rng.choice(PRODUCTS + COMMENTS)}\r\n"
        ).encode(),
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="description"\r\n\r\n'
            f"{rng.choice(COMMENTS + CODE_SNIPPETS)}\r\n"
        ).encode(),
        (
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + payload
        + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    host = rng.choice(HOSTS)
    headers = _form_headers(rng, host, f"multipart/form-data; boundary={boundary}")
    return {
        "method": "POST",
        "uri": rng.choice(
            ["/account/avatar", "/upload", "/api/files", "/support/tickets/new", "/import"]
        ),
        "headers": headers,
        "body_b64": base64.b64encode(b"".join(parts)).decode(),
    }


def api_get(rng: random.Random) -> dict[str, object]:
    host = HOSTS[3]
    kind = rng.randrange(4)
    if kind == 0:
        ids = ",".join(str(rng.randint(1, 10**5)) for _ in range(rng.randint(1, 10)))
        uri = f"/v2/products?ids={ids}&fields=id,name,price"
    elif kind == 1:
        status = rng.choice(["open", "shipped", "cancelled"])
        uri = f"/v2/orders?status={status}&created_at[gte]=2024-11-01T00:00:00Z&limit=50"
    elif kind == 2:
        uri = "/v2/geo/lookup?" + urlencode(
            {"address": f"{rng.choice(STREETS)}, {rng.choice(CITIES)}"}
        )
    else:
        locale = rng.choice(["en_US", "de_DE", "ja_JP"])
        uri = (
            f"/v1/users/{rng.randint(1, 10**6)}/preferences"
            f"?include=notifications,privacy&locale={locale}"
        )
    headers = _api_headers(rng, host, browser=rng.random() < 0.4)
    del headers["Content-Type"]
    return {"method": "GET", "uri": uri, "headers": headers}


def login(rng: random.Random) -> dict[str, object]:
    host = rng.choice(HOSTS[:3])
    password = _token(
        rng,
        rng.randint(10, 20),
        string.ascii_letters + string.digits + "!@#$%^&*()-_=+[]{};:,.<>/?'\"",
    )
    fields = [
        (
            "username",
            rng.choice(
                [
                    f"{rng.choice(FIRST).lower()}{rng.randint(1, 99)}",
                    f"{rng.choice(FIRST).lower()}@example.com",
                ]
            ),
        ),
        ("password", password),
        ("remember_me", rng.choice(["on", "off"])),
        ("next", rng.choice(["/account", "/checkout?step=2", "/"])),
    ]
    return {
        "method": "POST",
        "uri": "/login",
        "headers": _form_headers(rng, host, "application/x-www-form-urlencoded"),
        "body": urlencode(fields),
    }


def i18n_text(rng: random.Random) -> dict[str, object]:
    host = HOSTS[2]
    texts = [
        "Ich hätte gern eine Rückerstattung für Bestellung Nr. 4711.",
        "¿Dónde está mi pedido? Lo compré el 3/11.",
        "这个产品质量很好，物流也很快！",
        "배송이 너무 늦어요. 언제 도착하나요?",
        "Ce n'est pas ce que j'ai commandé — pourriez-vous vérifier ?",
        "Ótimo atendimento, nota 10!",
        "Θα ήθελα να αλλάξω το μέγεθος σε M.",
        "הזמנתי שני פריטים וקיבלתי רק אחד",
        "Mükemmel ürün, teşekkürler 🙏",
        "Dziękuję za szybką wysyłkę — polecam!",
        "お世話になっております。注文番号#A-1029の件で連絡しました。",
        "Спасибо! Всё пришло вовремя, упаковка «как надо».",
    ]
    fields = [
        ("name", f"{rng.choice(FIRST)} {rng.choice(LAST)}"),
        ("message", rng.choice(texts)),
        ("lang", rng.choice(["de", "es", "zh", "ko", "fr"])),
    ]
    return {
        "method": "POST",
        "uri": "/support/message",
        "headers": _form_headers(rng, host, "application/x-www-form-urlencoded; charset=UTF-8"),
        "body": urlencode(fields),
    }


RICH_TEXT = [
    "<p>Hi all,</p><p>We've moved the <strong>community meetup</strong> to "
    '<a href="https://www.example.org/events/2025/summit?ref=newsletter&amp;lang=en">'
    "the summit page</a>.</p>",
    "<h2>Release notes</h2><ul><li>Faster checkout &amp; fewer clicks</li>"
    "<li>Dark mode (finally!)</li><li>Bug fixes</li></ul>",
    "<blockquote>It's not a bug, it's a feature.</blockquote><p>&mdash; every dev, ever</p>",
    '<p><img src="https://cdn.example.com/u/4411/IMG_2041.jpg" alt="O\'Brien\'s pub at night" '
    'width="640" height="480"></p><p>Photo from last Friday.</p>',
    "<p>Use <code>npm run build</code> and then <code>npm start</code>.</p>"
    "<pre><code>const x = items.filter(i =&gt; i.ok);</code></pre>",
    "<p>Table:</p><table><tr><th>Size</th><th>Chest</th></tr><tr><td>M</td><td>96&ndash;"
    "101 cm</td></tr></table>",
    '<p>Check <a href="mailto:help@example.com">help@example.com</a> or '
    '<a href="tel:+353123456">+353 1 23 456</a>.</p><br><p><em>Thanks!</em></p>',
]
SUPPORT = [
    "The export is saved to C:\\Users\\Public\\Documents\\report-2024.xlsx but Excel says "
    "it's corrupted.",
    "Installer at D:\\Downloads\\setup_v2.3.exe fails with error 0x80070005 (access denied).",
    "On my Mac the app keeps its data in ~/Library/Application Support/ExampleApp; "
    "should I delete it?",
    "Our config lives in /opt/example/config.yaml and the logs in /srv/example/logs/app.log.",
    "After the update, `brew upgrade example` prints: Error: example 2.1 already installed",
    "The API returns 500 when the name contains an apostrophe (e.g. D'Angelo).",
    "Steps: 1) log in; 2) open Orders; 3) click 'Export' -> nothing happens.",
    "Version: 4.2.0 (build 1187); OS: Windows 11 23H2; browser: Edge 131.",
]


def rich_text(rng: random.Random) -> dict[str, object]:
    host = HOSTS[2]
    body = {
        "title": rng.choice(PRODUCTS + COMMENTS)[:60],
        "content_html": rng.choice(RICH_TEXT),
        "status": rng.choice(["draft", "published"]),
        "tags": rng.sample(["news", "events", "howto", "release", "community"], 2),
    }
    return {
        "method": rng.choice(["POST", "PUT"]),
        "uri": f"/wp-json/wp/v2/posts/{rng.randint(1, 9000)}",
        "headers": _api_headers(rng, host, browser=True),
        "body": json.dumps(body),
    }


def oauth_redirect(rng: random.Random) -> dict[str, object]:
    host = rng.choice(HOSTS[:3])
    kind = rng.randrange(3)
    if kind == 0:
        params = [
            ("response_type", "code"),
            ("client_id", _token(rng, 24)),
            ("redirect_uri", f"https://{host}/oauth/callback"),
            ("scope", "openid email profile"),
            ("state", _token(rng, 32)),
            ("nonce", _token(rng, 16)),
        ]
        uri = "/authorize?" + urlencode(params)
    elif kind == 1:
        next_path = rng.choice(["/account/orders?page=2", "/checkout?step=payment", "/"])
        uri = "/login?" + urlencode([("next", next_path)])
    else:
        back = f"https://{host}{rng.choice(PAGES)}?utm_source=email&utm_medium=link"
        uri = "/logout?" + urlencode([("return_to", back)])
    return {
        "method": "GET",
        "uri": uri,
        "headers": _browser_headers(rng, host, HTML_ACCEPT, True),
    }


def support_ticket(rng: random.Random) -> dict[str, object]:
    host = rng.choice(HOSTS[:3])
    fields = [
        ("subject", rng.choice(["Export broken", "Install error", "Data location?", "Bug report"])),
        ("description", rng.choice(SUPPORT)),
        ("priority", rng.choice(["low", "normal", "high"])),
        ("email", f"{rng.choice(FIRST).lower().replace(chr(39), '')}@example.com"),
    ]
    return {
        "method": "POST",
        "uri": "/support/tickets",
        "headers": _form_headers(rng, host, "application/x-www-form-urlencoded"),
        "body": urlencode(fields),
    }


SHAPES = [
    (page_view, 22),
    (asset, 14),
    (search, 12),
    (contact_form, 6),
    (checkout_form, 5),
    (comment_post, 8),
    (json_api, 12),
    (graphql, 5),
    (upload, 5),
    (api_get, 6),
    (login, 3),
    (i18n_text, 2),
    (rich_text, 3),
    (oauth_redirect, 4),
    (support_ticket, 3),
]


def generate(count: int = COUNT, seed: int = SEED) -> list[dict[str, object]]:
    rng = random.Random(seed)
    makers = [maker for maker, weight in SHAPES for _ in range(weight)]
    records = []
    for _ in range(count):
        record = rng.choice(makers)(rng)
        record["client_ip"] = (
            f"{rng.choice([81, 92, 151, 176, 203])}.{rng.randint(0, 255)}."
            f"{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        )
        records.append(record)
    return records


def main() -> int:
    lines = [json.dumps(record, ensure_ascii=False, sort_keys=True) for record in generate()]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} requests to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
