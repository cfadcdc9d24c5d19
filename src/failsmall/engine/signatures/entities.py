"""The character references `html_entity_decode` decodes in any case, besides HTML's own.

Browsers accept these punctuation and whitespace names in any case (`&TAB;`, `&NewLine;`,
`&colon;`), a common way to split `javascript:`. This module imports nothing: `setup.py` reads
it (with `html.entities.html5`) to generate the compiled transform's tables, so the Python
reference and the C code decode from one list.
"""

LOOSE_ENTITIES = {
    "tab": "\t",
    "newline": "\n",
    "colon": ":",
    "lpar": "(",
    "rpar": ")",
    "lbrace": "{",
    "rbrace": "}",
    "lcub": "{",
    "rcub": "}",
    "lsqb": "[",
    "rsqb": "]",
    "sol": "/",
    "bsol": "\\",
    "quot": '"',
    "apos": "'",
    "lt": "<",
    "gt": ">",
    "amp": "&",
    "semi": ";",
    "equals": "=",
    "grave": "`",
    "excl": "!",
    "dollar": "$",
    "period": ".",
    "comma": ",",
    "plus": "+",
    "num": "#",
    "percnt": "%",
}
