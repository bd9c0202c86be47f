"""Engine packages: a directory holding a backend's files plus `ocrnet.json` describing them.

A package is written into a hidden staging directory next to its destination and renamed into
place only once every file is written and the manifest (written last) lists their sha256. A
killed build therefore leaves at most a `.NAME.partial-*` directory without a manifest, which
`read_package` refuses; one killed while replacing a package, between moving the old one aside
and renaming the new one in, is undone by the next build (`restore_interrupted`). Loading
re-hashes every listed file, so a missing or edited file is an error rather than a silently
different model.
"""

from __future__ import annotations

from ocrnet.fileio import sha256_file
from ocrnet.package.manifest import (
    FORMAT,
    FORMAT_VERSION,
    GRAPH_OUTPUTS,
    INPUT_NAME,
    LOWRES,
    MANIFEST,
    OUTPUT_NAMES,
    InputSpec,
    Manifest,
    ModelInfo,
    check_member_name,
)
from ocrnet.package.reader import (
    Package,
    is_package,
    read_package,
    replaceable_package,
    tool_versions,
)
from ocrnet.package.writer import PackageWriter, restore_interrupted

__all__ = [
    "FORMAT", "FORMAT_VERSION", "GRAPH_OUTPUTS", "INPUT_NAME", "LOWRES", "MANIFEST",
    "OUTPUT_NAMES", "InputSpec",
    "Manifest", "ModelInfo", "Package", "PackageWriter", "check_member_name", "is_package",
    "read_package", "replaceable_package", "restore_interrupted", "sha256_file",
    "tool_versions",
]
