"""Print the main file's text in a speech bubble said by a cow (run inside the sandbox)."""

import sys


def bubble(text: str) -> str:
    """The cow saying ``text``."""
    lines = text.rstrip("\n").splitlines() or [""]
    width = max(len(line) for line in lines)
    top = " " + "_" * (width + 2)
    bottom = " " + "-" * (width + 2)
    body = [f"< {line.ljust(width)} >" for line in lines]
    cow = [
        "        \\   ^__^",
        "         \\  (oo)\\_______",
        "            (__)\\       )\\/\\",
        "                ||----w |",
        "                ||     ||",
    ]
    return "\n".join([top, *body, bottom, *cow]) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as source:
        sys.stdout.write(bubble(source.read()))
