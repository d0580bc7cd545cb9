"""The ``files`` capability: identify, probe, hash and store a file with its sidecars.

Steps ``parse`` (guessit + sidecars), ``probe`` (MediaInfo, EXIF), ``checksum`` (BLAKE3) and
``store`` (the content-addressed library); helpers shared by them: :mod:`.naming` (guessit),
:mod:`.hashing`, :mod:`.oserrors`, :mod:`.sidecars` (finding and reading sidecars),
:mod:`.sidecar_store` and :mod:`.placement` (making library files), :mod:`.media_kinds`.
Contributes ``harbord rebuild-catalog`` (:mod:`.rebuild`), the ffmpeg/mediainfo doctor checks
and the item text read from names, sidecars and EXIF.
"""

from __future__ import annotations

from harbord.capability import Capability, Step

CAPABILITY = Capability(
    name="files",
    steps=(
        Step("parse", "handlers.files.parse:Parse", pool=("handlers.files.naming",)),
        Step("probe", "handlers.files.probe:Probe", pool=("handlers.files.probe",)),
        Step("checksum", "handlers.files.checksum:Checksum"),
        Step("store", "handlers.files.store:Store"),
    ),
    commands=("handlers.files.commands:rebuild_catalog",),
    doctor=("handlers.files.doctor:checks",),
    text=("handlers.files.text:facts",),
)
