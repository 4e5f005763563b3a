"""Assertions about rendered pages shared by several test modules."""

import re

ASSET = re.compile(r'<(?:script|link|img)\b[^>]*?\b(?:src|href)="([^"]*)"', re.I)


def local_assets(html: str) -> list[str]:
    """Every script, stylesheet and image the page loads; fails if one comes from elsewhere."""
    assets = ASSET.findall(html)
    remote = [url for url in assets if re.match(r"^(?:[a-z]+:)?//", url, re.I)]
    assert not remote, f"assets loaded from another host: {remote}"
    return assets
