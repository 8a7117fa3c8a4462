#!/usr/bin/env python3
"""Variants of the generated llm-router Envoy config for `scripts/bench --anatomy`, each with one part
of the router taken out, so that the CPU each part costs is the difference to the full config:

  no-access-log  without the listener's access log (one JSON line per request with the account)
  no-logger    without the router's upstream_log (the wasm access logger keeping the health memory)
  no-upstream  without the upstream wasm filter in the fallback clusters (model splice, keys, headers on
               retries; first attempts go to clusters without wasm, so this saves little by design)
  downstream   without both: only the downstream filter (auth, parse, plan, response rewriting)

Usage: variants.py ROUTER_YAML OUT_DIR PORT1..PORT4 ADMIN1..ADMIN4: writes OUT_DIR/router-<variant>.yaml,
the variants in the order above. Text surgery on the generator's YAML (two-space indents, lists at
their key's indentation), so it needs no YAML library; it fails loudly when the layout changes."""
import re
import sys


def indent(line):
    return len(line) - len(line.lstrip(" "))


def drop_blocks(lines, start):
    """Removes every block whose first line matches `start`: a key with its value (a list may sit at
    the key's own indentation) or a list item with its fields."""
    out, i, dropped = [], 0, 0
    while i < len(lines):
        line = lines[i]
        if re.match(start, line.strip()):
            dropped += 1
            base = indent(line)
            is_item = line.lstrip().startswith("- ")
            i += 1
            while i < len(lines):
                nxt = lines[i]
                if not nxt.strip():
                    i += 1
                    continue
                if indent(nxt) > base or (not is_item and indent(nxt) == base and nxt.lstrip().startswith("- ")):
                    i += 1
                    continue
                break
            continue
        out.append(line)
        i += 1
    if not dropped:
        sys.exit(f"variants.py: nothing matches {start!r}: the generated config changed shape")
    return out


def set_ports(lines, port, admin):
    """The admin port is the first port_value, the listener's the second."""
    out, seen = [], 0
    for line in lines:
        if re.match(r"\s*port_value: \d+$", line) and seen < 2:
            line = re.sub(r"\d+$", str(admin if seen == 0 else port), line)
            seen += 1
        out.append(line)
    return out


def main():
    src, out_dir, ports = sys.argv[1], sys.argv[2], sys.argv[3:]
    lines = open(src).read().split("\n")
    variants = {
        "no-access-log": drop_blocks(lines, r"access_log:$"),
        "no-logger": drop_blocks(lines, r"upstream_log:$"),
        "no-upstream": drop_blocks(lines, r"- name: llm_router_upstream$"),
    }
    variants["downstream"] = drop_blocks(variants["no-logger"], r"- name: llm_router_upstream$")
    if len(ports) != 2 * len(variants):
        sys.exit(f"variants.py: need {2 * len(variants)} ports")
    n = len(variants)
    for k, (name, body) in enumerate(variants.items()):
        body = set_ports(body, int(ports[k]), int(ports[n + k]))
        with open(f"{out_dir}/router-{name}.yaml", "w") as f:
            f.write("\n".join(body))
        print(name)


if __name__ == "__main__":
    main()
