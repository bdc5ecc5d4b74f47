"""A README block the platform check runs: the ```sh block between
<!-- platform-check:NAME ...--> and <!-- /platform-check:NAME -->, as a script.

    python3 readme_block.py README.md NAME OUT

Only `sudo ` is dropped and, in the install block, `<this repository>` becomes /src (the
checkout, copied into the root). A block the check could not run as written (an interactive
command, no placeholder to clone from) is an error naming the README, so the documentation
cannot drift away from what is tested.
"""

from __future__ import annotations

import re
import sys

CLONE_PLACEHOLDER = "<this repository>"


class ReadmeError(Exception):
    pass


def block(text: str, name: str) -> str:
    m = re.search(r"<!-- platform-check:%s\b[^>]*-->\s*```sh\n(.*?)```\s*<!-- /platform-check:%s -->"
                  % (re.escape(name), re.escape(name)), text, re.S)
    if not m:
        raise ReadmeError(f"README.md has no ```sh block between <!-- platform-check:{name} --> and "
                          f"<!-- /platform-check:{name} -->")
    return m.group(1)


def script(text: str, name: str, clone_from: str = "/src") -> str:
    lines = []
    for line in block(text, name).splitlines():
        if re.search(r"\bsudoedit\b|\bvi\b|\bnano\b", line):
            raise ReadmeError(f"README.md block {name}: an interactive command cannot be checked: {line.strip()}")
        lines.append(re.sub(r"(^|&&\s*|;\s*)sudo\s+", r"\1", line))
    body = "\n".join(lines)
    if name == "install":
        if CLONE_PLACEHOLDER not in body:
            raise ReadmeError(f"README.md install block: the clone must name {CLONE_PLACEHOLDER} "
                              f"(the check clones {clone_from} there)")
        body = body.replace(CLONE_PLACEHOLDER, clone_from)
    return "set -euxo pipefail\n" + body + "\n"


if __name__ == "__main__":
    readme, name, out = sys.argv[1:]
    try:
        text = script(open(readme, encoding="utf-8").read(), name)
    except ReadmeError as exc:
        sys.exit(str(exc))
    with open(out, "w") as f:
        f.write(text)
