"""Reports: the HTML pages and matplotlib plots."""
