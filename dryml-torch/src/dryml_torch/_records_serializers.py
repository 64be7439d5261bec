"""Serializer and argument-codec records of dryml-torch (no framework import here)."""

from __future__ import annotations

from dryml.records import ArgCodecRecord, SerializerRecord

SERIALIZERS: list[SerializerRecord] = []
ARG_CODECS: list[ArgCodecRecord] = []
#: Framework modules whose classes may be passed as constructor arguments in files.
TRUSTED_MODULES: list[str] = []
