"""What text on a serial console means: the line's bytes cleaned to text, and the patterns of
its prompts (login, password, shell, sudo) and of the kernel's log lines. serial.py acts on them.
"""

from __future__ import annotations

import re

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>]")
# Kernel log lines ("[   12.345678] usb 1-1: ...") land on the console at any moment, even right
# after a prompt; they are ignored when looking for one.
KERNEL_LINE = re.compile(r"\n?\[\s*\d+\.\d+\][^\n]*(?:\n|\Z)")
LOGIN = re.compile(r"(?i)\blogin:\s*\Z")
PASSWORD = re.compile(r"(?i)password[^\n]*:\s*\Z")
SHELL = re.compile(r"[#$%>]\s*\Z")
LOGIN_FAILED = re.compile(r"(?i)login incorrect|authentication failure|permission denied")
LOGIN_ANYWHERE = re.compile(r"(?im)^\S*\s*login:\s*$")
SUDO_PROMPT = "[eas-sudo %u] "  # sudo expands %u, so the echoed command line cannot match the prompt
SUDO_ASKS = re.compile(r"\[eas-sudo [^\]\s]+\] \Z")


def clean(raw: bytes) -> str:
    """Bytes from the line as text: CR/LF -> LF, terminal escape sequences and NULs removed."""
    text = raw.decode("utf-8", errors="replace")
    text = ANSI.sub("", text).replace("\x00", "")
    return text.replace("\r\n", "\n").replace("\r", "")
