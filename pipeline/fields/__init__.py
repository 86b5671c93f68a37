"""Field codecs: one per Twenty field type, shared by normalize, draft and export.

A codec says a type's sub-fields, how a source column parses into it (vectorized
polars), what its value looks like in a record payload, and how a value Twenty stores
flattens back into text columns that the same codec parses into the same payload value.
:func:`codec_for` finds the codec of a field type. The sandbox keeps its own, independent
reading of Twenty and does not use these.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pipeline.fields.base import FieldCodec, JsonValue, ParseContext, Parsed, SpecOptions
from pipeline.fields.composites import (
    ActorCodec,
    AddressCodec,
    CurrencyCodec,
    EmailsCodec,
    FullNameCodec,
    LinksCodec,
    RichTextCodec,
)
from pipeline.fields.dates import DateCodec, DateTimeCodec
from pipeline.fields.options import MultiSelectCodec, SelectCodec
from pipeline.fields.phones import PhonesCodec
from pipeline.fields.scalars import (
    ArrayCodec,
    BooleanCodec,
    NumberCodec,
    RawJsonCodec,
    ReadOnlyCodec,
    RelationCodec,
    TextCodec,
    UuidCodec,
)

_ALL: tuple[FieldCodec, ...] = (
    TextCodec(),
    NumberCodec(),
    BooleanCodec(),
    DateTimeCodec(),
    DateCodec(),
    SelectCodec(),
    MultiSelectCodec(),
    EmailsCodec(),
    PhonesCodec(),
    LinksCodec(),
    FullNameCodec(),
    AddressCodec(),
    CurrencyCodec(),
    ArrayCodec(),
    RawJsonCodec(),
    RelationCodec(),
    UuidCodec(),
    RichTextCodec(),
    ActorCodec(),
    ReadOnlyCodec(),
)

CODECS: Mapping[str, FieldCodec] = MappingProxyType(
    {field_type: codec for codec in _ALL for field_type in codec.types}
)
"""Field type -> its codec."""

_FALLBACK = TextCodec()


def codec_for(field_type: str) -> FieldCodec:
    """The codec of ``field_type``; a type this client does not know is read as text."""
    return CODECS.get(field_type, _FALLBACK)


__all__ = [
    "CODECS",
    "FieldCodec",
    "JsonValue",
    "ParseContext",
    "Parsed",
    "SpecOptions",
    "codec_for",
]
