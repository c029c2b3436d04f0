"""Apache / NCSA common and combined access log (and variants with extra fields after the byte count).

Context, not alerts: every valid line is Skipped("access_log"); any other line is a BadRecord.
"""

from __future__ import annotations

import re

from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped
from pipeline.normalize.registry import register
from pipeline.schema import Alert

# host ident user [24/Nov/2026:06:38:33 +0000] "request" status bytes [anything: referer, agent, unique id]
_LINE = re.compile(
    r'[^\s"\[]+ \S+ \S+ \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}(?:\.\d+)? [+-]\d{4}\] '
    r'"(?:[^"\\]|\\.)*" (?:\d{3}|-) (?:\d+|-)(?: |$)'
)


@register
class ApacheAccessNormalizer(Normalizer):
    name = "apache_access"
    product = "Apache HTTP Server"
    vendor = "Apache"
    family = "waf"
    on_host = True
    priority = 40

    def sniff(self, text: str) -> bool:
        return _LINE.match(text) is not None

    def normalize(self, rec: RawRecord) -> list[Alert]:
        if _LINE.match(rec.text) is None:
            raise BadRecord("bad_format", "not an access-log line")
        raise Skipped("access_log")
