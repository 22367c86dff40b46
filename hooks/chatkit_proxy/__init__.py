"""The steps around a render of the ChatKit cookie proxy template, and their command line.

Copier renders the template without `--trust` because the template has no tasks; what a
task would do (git init, the dependency install, checking an edited app) lives here.
"""

from pathlib import Path

__all__ = ["TEMPLATE_ROOT"]

# This package ships inside the template repository: hooks/chatkit_proxy/ -> the root.
TEMPLATE_ROOT = Path(__file__).resolve().parents[2]
