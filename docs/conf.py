"""Sphinx configuration of the hts_fast documentation (``sphinx-build -W -b html docs OUT``)."""

from __future__ import annotations

import hts_fast

project = "hts_fast"
author = "hts_fast contributors"
release = hts_fast.__version__
version = release

extensions = [
    "myst_parser",  # the pages are Markdown
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # NumPy-style docstring sections
    "sphinx.ext.mathjax",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# weightwatcher.md, tempbalance.md and fits.md are written with their features and join the
# toctree then; until they exist nothing here names them.
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True  # "Attributes" as fields: autodoc documents the members themselves

html_theme = "furo"
html_title = f"hts_fast {release}"
