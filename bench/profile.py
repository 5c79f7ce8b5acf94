"""Optional: where the worker's CPU goes, sampled with py-spy while (a) runs (not during measuring)."""

from __future__ import annotations
