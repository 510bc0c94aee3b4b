#!/usr/bin/env python3
"""Renderings of chat templates for the Swift tests of ShadowLLM's chat command.

Usage: python3 scripts/reference/chat_renderings.py

Renders Tests/ShadowCLITests/Fixtures/chat-templates/smollm3.jinja with transformers' own Jinja
environment (trim_blocks, lstrip_blocks, its {% generation %} tag) for a few conversations, with
strftime_now returning "{DATE}" (the tests put in the date they expect), and writes
Tests/ShadowCLITests/Fixtures/chat-templates/smollm3-renderings.json:
[{"name", "messages", "enable_thinking" (absent: the template's default), "text"}].
"""
import json
from pathlib import Path

from transformers.utils.chat_template_utils import _compile_jinja_template

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "Tests" / "ShadowCLITests" / "Fixtures" / "chat-templates"

CASES = [
    ("default", [{"role": "user", "content": "Hi"}], None),
    ("no think", [{"role": "user", "content": "Hi"}], False),
    ("system", [{"role": "system", "content": "  Be brief.  \n"}, {"role": "user", "content": "Hi"}], None),
    ("system no_think, two turns",
     [{"role": "system", "content": "Be brief. /no_think"}, {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "More"}], None),
    ("system think beats the switch", [{"role": "system", "content": "/think Be brief."}, {"role": "user", "content": "Hi"}], False),
    ("only the flag", [{"role": "system", "content": "/no_think"}, {"role": "user", "content": "Hi"}], None),
    ("override", [{"role": "system", "content": "Only this. /system_override  "}, {"role": "user", "content": "Hi"}], None),
    ("thinking, two turns",
     [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>\nHm.\n</think>\nHello"},
      {"role": "user", "content": "More"}], None),
]


def main() -> None:
    template = _compile_jinja_template((FIXTURES / "smollm3.jinja").read_text())
    out = []
    for name, messages, thinking in CASES:
        kwargs = {} if thinking is None else {"enable_thinking": thinking}
        text = template.render(messages=messages, add_generation_prompt=True, strftime_now=lambda fmt: "{DATE}", **kwargs)
        case = {"name": name, "messages": messages, "text": text}
        if thinking is not None:
            case["enable_thinking"] = thinking
        out.append(case)
    path = FIXTURES / "smollm3-renderings.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(out)} renderings to {path}")


if __name__ == "__main__":
    main()
