#!/usr/bin/env python3
"""Lists the functions of segkd's non-test C++ sources longer than a limit (default 80 lines, body braces included).

A function is a top-level-in-its-scope `{ ... }` block whose opening line looks like a function head (an identifier
followed by a parameter list, not a class/struct/namespace/enum/initialiser). Comments, string and character
literals are blanked first so braces inside them do not count. Lambdas count as part of their enclosing function.
Exit status 1 when any function other than those listed in ALLOWED is too long.
Usage: scripts/check_function_length.py [--limit N] [ROOT]
"""
import argparse
import os
import re
import sys

DIRS = ["common", "data", "distributed", "launch", "losses", "models", "train"]
ALLOWED = {("models/weights.cpp", "run")}  # Unpickler::run, the pickle opcode switch: one case per opcode, kept in one place
HEAD = re.compile(r"([~\w:<>]+)\s*\([^;{}]*\)\s*(const\s*)?(noexcept\s*)?(override\s*)?(->\s*[\w:<>,\s*&]+)?(:[^{};]*)?$",
                  re.S)
NOT_FUNCTIONS = {"if", "for", "while", "switch", "catch", "return", "sizeof", "decltype", "alignof"}


def blank(text):
    """Comments, string and char literals replaced by spaces (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j])); i = j
        elif text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(")" + m.group(1) + '"', i) + len(m.group(1)) + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end])); i = end
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(" " * (j + 1 - i)); i = j + 1
        else:
            out.append(c); i += 1
    return "".join(out)


def functions(text):
    """(name, first line, line count) of every function body in `text` (already blanked)."""
    found, stack, last_end = [], [], 0  # stack: (kind, start offset, start line, name)
    line = 1
    for i, c in enumerate(text):
        if c == "\n":
            line += 1
        elif c in "{;}" and c != "{":
            if c == ";" :
                if not stack or stack[-1][0] != "function":
                    last_end = i + 1
                continue
            kind, start, start_line, name = stack.pop()
            if kind == "function":
                found.append((name, start_line, line - start_line + 1))
            if not stack or stack[-1][0] != "function":
                last_end = i + 1
        elif c == "{":
            if stack and stack[-1][0] == "function":
                stack.append(("inner", i, line, ""))
                continue
            head = text[last_end:i].strip()
            head = re.sub(r"^(template\s*<[^{};]*>\s*)", "", head)
            m = HEAD.search(head)
            is_type = re.match(r"^(\w+\s+)*(class|struct|union|enum|namespace)\b", head)
            name = m.group(1).split("::")[-1] if m else ""
            if m and not is_type and name not in NOT_FUNCTIONS and "=" not in head.split("(")[0]:
                stack.append(("function", i, line, m.group(1)))
            else:
                stack.append(("scope", i, line, ""))
            last_end = i + 1
    return found


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--limit", type=int, default=80)
    p.add_argument("root", nargs="?", default=os.path.join(os.path.dirname(__file__), ".."))
    a = p.parse_args()
    bad = 0
    for d in DIRS:
        for dirpath, _, files in os.walk(os.path.join(a.root, d)):
            for f in sorted(files):
                if not f.endswith((".cpp", ".h")):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, a.root)
                for name, start, length in functions(blank(open(path, encoding="utf-8").read())):
                    if length > a.limit and (rel, name.split("::")[-1]) not in ALLOWED:
                        print(f"{rel}:{start}: {name} is {length} lines (limit {a.limit})")
                        bad += 1
    if bad:
        print(f"{bad} function(s) longer than {a.limit} lines")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
