"""Fills a template's {{NAME}} placeholders: render.py TEMPLATE OUT NAME=VALUE...

Fails if a placeholder is left without a value, so a config never goes out
half-filled.
"""
import re
import sys


def main(argv):
    if len(argv) < 3:
        sys.exit("usage: render.py TEMPLATE OUT NAME=VALUE...")
    template, out, pairs = argv[1], argv[2], argv[3:]
    values = dict(p.split("=", 1) for p in pairs)
    text = open(template, encoding="utf-8").read()
    missing = sorted(set(re.findall(r"\{\{(\w+)\}\}", text)) - values.keys())
    if missing:
        sys.exit(f"render.py: {template} needs {', '.join(missing)}")
    text = re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main(sys.argv)
