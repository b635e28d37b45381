"""The health_check module: what ansible-test sanity cannot know about it.

(Its documentation against its argument spec, and ansible-doc rendering, are
checked by ``ansible-test sanity`` in scripts/test.)
"""

from __future__ import annotations

import yaml

from ansible_collections.fieldservice.deploy.plugins.module_utils import health
from ansible_collections.fieldservice.deploy.plugins.modules import health_check as module


def test_every_report_key_is_documented():
    returned = yaml.safe_load(module.RETURN)
    assert set(module.REPORT_KEYS) <= set(returned)


def test_default_patterns_match_module_utils():
    assert module.ARGUMENT_SPEC["critical_patterns"]["default"] == health.DEFAULT_CRITICAL_PATTERNS
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["options"]["critical_patterns"]["default"] == health.DEFAULT_CRITICAL_PATTERNS
