"""Markdown pieces every experiment's report shares."""

from typing import Any, Mapping


def fingerprint_line(fingerprint: Mapping[str, Any]) -> str:
    """Which config and input files produced these numbers, by content."""
    inputs = ", ".join(f"`{key}` {v['path']} (sha256 {v['sha256'][:12]})" for key, v in fingerprint["inputs"].items())
    return (f"Config sha256 `{fingerprint['config_sha256'][:12]}`; input files: {inputs or 'none'} "
            "(full hashes in `results.json`).")


def figure_lines(figures: Mapping[str, str]) -> list[str]:
    """One image and caption per figure; `figures` maps a caption to a path relative to the report."""
    return [f"![{caption}]({path})\n\n*{caption}*" for caption, path in figures.items()]
