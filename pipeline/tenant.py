"""Tenant ids: one strict syntax, checked wherever a tenant id enters the pipeline.

A tenant id is 1-63 characters: a lower-case letter or digit, then lower-case letters, digits, `-` or `_`
(the shape of a DNS label; customer codes such as `acme`, `cust-0042`, `eu_shop_7` and UUIDs fit).
The id is used as it is, never rewritten: it names the tenant's folder under `MDR_HOME`, keys its Kafka
messages and state, and labels its metrics, so two different ids never share a folder or a key, and no id
can be `.`, `..`, a path, or differ from another only in case (case-insensitive file systems).

Names the pipeline uses internally start with `_` (`_global`: intel every tenant sees), which no tenant id
can, so an import "for" such a name is refused instead of turning into global data.

Entry points that check it: every CLI `--tenant` (exit 2 with one line), `mdr worker --bind TOPIC=TENANT`,
the stream envelope's `tenant` field and the `tenant` Kafka header (dead letter `bad_tenant`), the context
store (import, save, load) and `replay`.
"""

from __future__ import annotations

import re
from typing import TypeGuard

TENANT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SYNTAX = "1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit"
GLOBAL = "_global"  # the pseudo-tenant of data shared by all tenants (never a valid tenant id)


class TenantError(ValueError):
    """A tenant id that does not follow the syntax; the message names the value and the rule."""


def is_tenant(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and TENANT_RE.fullmatch(value) is not None


def check_tenant(value: object, what: str = "tenant id") -> str:
    """`value` when it is a valid tenant id, else TenantError (one line, the value shown escaped)."""
    if is_tenant(value):
        return value
    if not isinstance(value, str):
        raise TenantError(f"{what} must be a string, not {type(value).__name__}")
    shown = repr(value if len(value) <= 80 else value[:80] + "...")
    if value.startswith("_"):
        raise TenantError(f"{what} {shown} is reserved for internal use (names starting with '_'); "
                          f"use {SYNTAX}")
    hint = " (lower-case)" if is_tenant(value.lower()) else ""
    raise TenantError(f"bad {what} {shown}{hint}: use {SYNTAX}")
