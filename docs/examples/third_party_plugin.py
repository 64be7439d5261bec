"""A third-party dryml plugin, registered in-process: new argument and state types.

dryml cannot record a :class:`fractions.Fraction` constructor argument or ``store.put`` a
:class:`datetime.date` out of the box. This plugin teaches it both, through the same hooks an
installed backend uses (``docs/plugins.md`` explains each piece). Run it with only dryml-core
installed::

    python3 docs/examples/third_party_plugin.py

A real package would put the hook functions in ``mypkg/_plugin.py`` and declare them with an
entry point instead of calling ``register``::

    [project.entry-points.dryml]
    mypkg = "mypkg._plugin"
"""

from __future__ import annotations

import datetime
import io
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from dryml import Object, hookimpl, load_object, save_object
from dryml.cli import main as dryml_cli
from dryml.errors import ArgumentError
from dryml.format import MemberReader, MemberWriter
from dryml.plugins import get_plugin_manager
from dryml.records import ArgCodecRecord, SerializerRecord

PACKAGE = "example-plugin"  # the pip distribution a file names when it needs this plugin


# 1. The implementations: plain objects, found through "module:attr" references.
class FractionCodec:
    """``Fraction`` as a constructor argument: JSON ``[numerator, denominator]``."""

    def check(self, value: Fraction) -> None:
        """Every Fraction can be recorded."""

    def encode(self, value: Fraction, writer: MemberWriter | None) -> Any:
        return [value.numerator, value.denominator]

    def decode(self, data: Any, reader: MemberReader | None) -> Fraction:
        numerator, denominator = data
        return Fraction(int(numerator), int(denominator))

    def copy(self, value: Fraction) -> Fraction:
        return value  # immutable

    def equal(self, a: Fraction, b: Fraction) -> bool:
        return a == b


class DateSerializer:
    """``datetime.date`` values in an Object's state: ISO text in the manifest."""

    def dump(self, value: datetime.date, writer: MemberWriter) -> Any:
        return value.isoformat()

    def load(self, meta: Any, reader: MemberReader) -> datetime.date:
        return datetime.date.fromisoformat(meta)


FRACTION_CODEC = FractionCodec()
DATE_SERIALIZER = DateSerializer()


# 2. The plugin: hook implementations returning records. Records name types and
#    implementations by string, so listing plugins imports nothing heavy.
class ExamplePlugin:
    """What ``mypkg/_plugin.py`` would hold."""

    @hookimpl
    def dryml_arg_codecs(self) -> list[ArgCodecRecord]:
        return [ArgCodecRecord("example.fraction", types=["fractions:Fraction"],
                               impl=f"{__name__}:FRACTION_CODEC", package=PACKAGE)]

    @hookimpl
    def dryml_serializers(self) -> list[SerializerRecord]:
        return [SerializerRecord("example.date", types=["datetime:date"],
                                 impl=f"{__name__}:DATE_SERIALIZER", package=PACKAGE)]


# 3. An Object using both.
class Schedule(Object):
    """Runs at ``rate`` of full speed from a start date kept in its state."""

    def __init__(self, rate: Fraction) -> None:
        self.rate = rate
        self.start = datetime.date(2024, 1, 1)

    def save_object_imp(self, store: Any) -> None:
        store.put("start", self.start)

    def load_object_imp(self, store: Any) -> None:
        self.start = store.get("start")


def main() -> None:
    """Show the plugin at work: before registration, after, and in a saved file."""
    try:
        Schedule(Fraction(1, 3))
    except ArgumentError as exc:
        print(f"without the plugin: {exc}")

    info = get_plugin_manager().register(ExamplePlugin(), "example", distribution=PACKAGE)
    print(f"registered {info.name!r}: {info.status}, hooks {', '.join(info.hooks)}")
    assert info.status == "active"

    schedule = Schedule(Fraction(1, 3))
    assert schedule.definition().build().rate == Fraction(1, 3)
    buffer = io.BytesIO()
    save_object(schedule, buffer)
    buffer.seek(0)
    loaded = load_object(buffer)
    assert isinstance(loaded, Schedule)
    assert (loaded.rate, loaded.start) == (Fraction(1, 3), datetime.date(2024, 1, 1))
    print(f"round trip: rate={loaded.rate}, start={loaded.start}")

    print("\n$ dryml plugins")
    dryml_cli(["plugins"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "schedule.dry"
        save_object(schedule, path)
        print("\n$ dryml inspect schedule.dry")
        assert dryml_cli(["inspect", str(path)]) == 0


if __name__ == "__main__":
    main()
