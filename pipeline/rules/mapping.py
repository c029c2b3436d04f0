"""A bridge for `pipeline/incidents.py`, which still imports `getter` and `resolve_field` from here.

The field mapping lives in fieldmap.py (names -> paths), views.py (computed paths), values.py (reading values),
logsources.py (routes) and alert_builder.py (alerts from fields); `pipeline.rules` exports its public names.
Nothing else imports this module (tests/rules/test_mapping.py checks): delete it once incidents.py imports
from `pipeline.rules`.
"""

from pipeline.rules.fieldmap import resolve_field
from pipeline.rules.values import getter

__all__ = ["getter", "resolve_field"]
