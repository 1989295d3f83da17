"""Terms (django_jobs.pro.terms): Python values as tagged JSON, never pickle.

Round trips of every supported type, alone and nested, through JSON text and through the
database's JSON column; dicts that JSON cannot hold as objects; forged or malformed tags
refused without importing or calling anything; unsupported values named by their path;
pack/unpack. (Terms inside jobs are covered by tests/test_recorded.py, recorded results, and
tests/test_structured.py, the Term field.)
"""

import base64
import builtins
import datetime
import decimal
import enum
import json
import math
import pickle
import uuid
import zlib
from unittest import mock

from django.test import SimpleTestCase, TestCase

from django_jobs.pro import terms
from django_jobs.pro.terms import TAG, TermError, decode, encode, pack, packed_size, unpack

from .helpers import reload
from .pro_workers import PlainWorker

UTC = datetime.UTC
PLUS_2 = datetime.timezone(datetime.timedelta(hours=2))

#: One value of each supported type (the JSON ones and the tagged ones).
SAMPLES = {
    "none": None,
    "str": "héllo ✓",
    "empty str": "",
    "true": True,
    "false": False,
    "int": 42,
    "negative int": -7,
    "big int": 2 ** 80,
    "float": 0.1,
    "negative zero": -0.0,
    "inf": math.inf,
    "minus inf": -math.inf,
    "nan": math.nan,
    "list": [1, "a", None],
    "empty list": [],
    "dict": {"a": 1, "b": [True]},
    "empty dict": {},
    "tuple": (1, "two", 3.0),
    "empty tuple": (),
    "set": {3, 1, 2},
    "empty set": set(),
    "frozenset": frozenset({"x", "y"}),
    "bytes": b"\x00\xffbinary",
    "empty bytes": b"",
    "decimal": decimal.Decimal("12.50"),
    "decimal exponent": decimal.Decimal("1E+5"),
    "naive datetime": datetime.datetime(2026, 12, 2, 13, 17, 4, 123456),
    "aware datetime": datetime.datetime(2026, 12, 2, 13, 17, 4, tzinfo=PLUS_2),
    "utc datetime": datetime.datetime(2026, 12, 2, 13, 17, 4, tzinfo=UTC),
    "date": datetime.date(2026, 12, 2),
    "time": datetime.time(12, 30, 0, 250),
    "aware time": datetime.time(12, 30, tzinfo=PLUS_2),
    "timedelta": datetime.timedelta(days=3, seconds=7, microseconds=11),
    "negative timedelta": datetime.timedelta(seconds=-1.5),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
}

NESTED = {
    "orders": [
        {"id": 1, "lines": ((1, decimal.Decimal("9.90")), (2, decimal.Decimal("0.10"))),
         "at": datetime.datetime(2026, 1, 5, 9, 0, tzinfo=UTC), "tags": {"a", "b"}},
        {"id": 2, "lines": (), "at": None, "tags": frozenset()},
    ],
    "by_day": {datetime.date(2026, 1, 5): [uuid.UUID(int=1)], datetime.date(2026, 1, 6): []},
    "raw": [b"\x01", bytearray(b"\x02")],
    "gaps": (datetime.timedelta(minutes=5), datetime.time(8, 0)),
    "deep": [[[{"x": ({1, 2}, {"y": math.nan})}]]],
}


#: Floats terms store as plain JSON numbers (the others are tagged or exact).
PLAIN_FLOATS = ("float", "negative zero")


def same(a, b) -> bool:
    """Equal, of the same types all the way down (NaN equals NaN, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a)
                                                     == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        return all(any(same(k, k2) and same(v, b[k2]) for k2 in b if k2 == k)
                   for k, v in a.items())
    if isinstance(a, (set, frozenset)):
        return a == b and all(type(x) in {type(y) for y in b} for x in a)
    if isinstance(a, (datetime.datetime, datetime.time)):
        return a == b and a.utcoffset() == b.utcoffset() if a.tzinfo or b.tzinfo else a == b
    if isinstance(a, decimal.Decimal):
        return a.as_tuple() == b.as_tuple()
    return a == b


def through_json(value):
    """encode, then to JSON text (as strict as PostgreSQL: no NaN), back, and decode."""
    text = json.dumps(encode(value), allow_nan=False)
    return decode(json.loads(text))


class RoundTripTests(SimpleTestCase):
    def assertSame(self, value, back):
        self.assertTrue(same(value, back), f"{value!r} came back as {back!r}")

    def test_every_supported_type_round_trips_with_its_type(self):
        for name, value in SAMPLES.items():
            with self.subTest(name):
                self.assertSame(value, decode(encode(value)))
                self.assertSame(value, through_json(value))

    def test_nested_values_round_trip(self):
        back = through_json(NESTED)
        self.assertEqual(set(back), set(NESTED))
        self.assertSame(NESTED["orders"], back["orders"])
        self.assertSame(NESTED["by_day"], back["by_day"])
        self.assertEqual(back["raw"], [b"\x01", b"\x02"])  # a bytearray reads back as bytes
        self.assertTrue(all(type(item) is bytes for item in back["raw"]))
        self.assertSame(NESTED["gaps"], back["gaps"])
        inner = back["deep"][0][0][0]["x"]
        self.assertIsInstance(inner, tuple)
        self.assertEqual(inner[0], {1, 2})
        self.assertTrue(math.isnan(inner[1]["y"]))

    def test_json_values_pass_through_unchanged(self):
        value = {"a": [1, 2.5, "x", None, True, {"b": []}], "c": {}}
        self.assertEqual(encode(value), value)
        self.assertEqual(json.dumps(encode(value)), json.dumps(value))
        self.assertEqual(decode(value), value)

    def test_other_values_are_one_key_tagged_objects(self):
        self.assertEqual(encode((1, 2)), {TAG: ["tuple", [1, 2]]})
        self.assertEqual(encode({3, 1, 2}), {TAG: ["set", [1, 2, 3]]})
        self.assertEqual(encode(b"\x00\x01"), {TAG: ["bytes", "AAE="]})
        self.assertEqual(encode(decimal.Decimal("12.50")), {TAG: ["decimal", "12.50"]})
        self.assertEqual(encode(datetime.date(2026, 12, 2)), {TAG: ["date", "2026-12-02"]})
        self.assertEqual(encode(datetime.timedelta(days=1, seconds=2, microseconds=3)),
                         {TAG: ["timedelta", [1, 2, 3]]})
        self.assertEqual(encode(math.nan), {TAG: ["float", "nan"]})
        self.assertEqual(encode(uuid.UUID(int=255)), {TAG: ["uuid", "0" * 30 + "ff"]})

    def test_sets_are_stored_in_a_stable_order(self):
        self.assertEqual(encode({"b", "c", "a"}), encode({"a", "c", "b"}))
        self.assertEqual(encode({3, 1, 2})[TAG][1], [1, 2, 3])
        mixed = {1, "a", (2, 3), None}  # not sortable: any order reads back as the same set
        self.assertSame(mixed, through_json(mixed))

    def test_dicts_with_non_string_keys_are_stored_as_pairs(self):
        value = {1: "one", 2.5: "float", (1, 2): "tuple", None: "none",
                 frozenset({1}): "frozenset", datetime.date(2026, 1, 1): "date",
                 decimal.Decimal("1.5"): "decimal", "text": "str"}
        stored = encode(value)
        self.assertEqual(list(stored), [TAG])
        self.assertEqual(stored[TAG][0], "dict")
        back = through_json(value)
        self.assertSame(value, back)
        self.assertEqual({type(key) for key in back},
                         {int, float, tuple, type(None), frozenset, datetime.date,
                          decimal.Decimal, str})

    def test_a_dict_with_a_term_key_is_never_mistaken_for_a_tag(self):
        for value in ({TAG: ["tuple", [1, 2]]},
                      {TAG: ["tuple", [1, 2]], "other": 1},
                      {"outer": {TAG: "not a tag"}},
                      [{TAG: ["bytes", "AAE="]}],
                      {TAG: {TAG: ["set", []]}}):
            with self.subTest(value=value):
                back = through_json(value)
                self.assertEqual(back, value)
                self.assertSame(value, back)

    def test_decoding_what_was_stored_as_plain_json_gives_json(self):
        self.assertEqual(decode([{"a": [1, {"b": None}]}]), [{"a": [1, {"b": None}]}])


def _canary():
    """Called if anything ever unpickles the payload of the tests below."""
    CALLED.append("unpickled")


CALLED: list = []


class _Evil:
    def __reduce__(self):
        return (_canary, ())


class ForgedTermTests(SimpleTestCase):
    def setUp(self):
        CALLED.clear()

    FORGED = [
        {TAG: ["os.system", "echo pwned"]},
        {TAG: ["__import__", "os"]},
        {TAG: ["pickle", base64.b64encode(pickle.dumps(_Evil())).decode()]},
        {TAG: ["encode", 1]},                    # a function of the terms module
        {TAG: ["TermError", "x"]},
        {TAG: ["_tagged", ["tuple", []]]},
        {TAG: ["tuple", [1, 2]], "extra": 1},    # a tag and another key
        {TAG: ["tuple"]},                        # no payload
        {TAG: ["tuple", [1], "more"]},
        {TAG: "tuple"},
        {TAG: None},
        {TAG: ["bytes", "not base64!"]},
        {TAG: ["bytes", 12]},
        {TAG: ["decimal", "twelve"]},
        {TAG: ["decimal", {"__reduce__": "x"}]},
        {TAG: ["datetime", 5]},
        {TAG: ["datetime", "yesterday"]},
        {TAG: ["date", "2026-13-01"]},
        {TAG: ["time", "25:00"]},
        {TAG: ["timedelta", "one day"]},
        {TAG: ["timedelta", [10 ** 12, 0, 0]]},
        {TAG: ["uuid", "not-a-uuid"]},
        {TAG: ["float", "a lot"]},
        {TAG: ["dict", [[[1, 2], "unhashable key"]]]},
        {TAG: ["dict", "pairs"]},
        {TAG: ["set", [[1, 2]]]},                # unhashable item
        {TAG: ["tuple", 5]},
    ]

    def test_forged_and_malformed_tags_are_refused(self):
        for data in self.FORGED:
            with self.subTest(data=data):
                with self.assertRaises(TermError) as caught:
                    decode(data)
                self.assertIn("not a valid", str(caught.exception))
                # Nested anywhere, the same.
                with self.assertRaises(TermError):
                    decode({"a": [1, {"b": data}]})

    def test_a_tag_name_that_is_not_a_string_is_refused(self):
        for data in ({TAG: [["tuple"], []]}, {TAG: [{"a": 1}, []]}):
            with self.subTest(data=data):
                with self.assertRaises(TermError):
                    decode(data)

    def test_decoding_never_imports_or_calls_anything(self):
        real_import = builtins.__import__
        imported = []

        def recording_import(name, *args, **kwargs):
            imported.append(name)
            return real_import(name, *args, **kwargs)

        valid = [encode(value) for value in (*SAMPLES.values(), NESTED)]
        with mock.patch("builtins.__import__", recording_import):
            for data in self.FORGED:
                try:
                    decode(data)
                except TermError:
                    pass
            for data in valid:
                decode(data)
        self.assertEqual(imported, [], "decode imported modules")
        self.assertEqual(CALLED, [], "decode called what the payload named")

    def test_pickled_bytes_stay_bytes(self):
        payload = pickle.dumps(_Evil())
        back = decode({TAG: ["bytes", base64.b64encode(payload).decode()]})
        self.assertEqual(back, payload)
        self.assertEqual(CALLED, [])

    def test_unpack_refuses_a_pickle_and_never_runs_it(self):
        for blob in (pickle.dumps(_Evil()), zlib.compress(pickle.dumps(_Evil()))):
            with self.subTest(blob=blob[:10]):
                with self.assertRaises(TermError) as caught:
                    unpack(base64.b64encode(blob).decode())
                self.assertIn("not a packed term", str(caught.exception))
        self.assertEqual(CALLED, [])

    def test_unpack_refuses_garbage(self):
        for text in ("", "***", base64.b64encode(b"not zlib").decode(),
                     base64.b64encode(zlib.compress(b"{not json")).decode()):
            with self.subTest(text=text):
                with self.assertRaises(TermError):
                    unpack(text)
        forged = base64.b64encode(zlib.compress(json.dumps({TAG: ["os.system", "x"]}).encode()))
        with self.assertRaises(TermError):
            unpack(forged.decode())


class Opaque:
    pass


class Colour(enum.Enum):
    RED = 1


class UnsupportedTests(SimpleTestCase):
    def assertRefused(self, value, where, type_name, **kwargs):
        with self.assertRaises(TermError) as caught:
            encode(value, **kwargs)
        message = str(caught.exception)
        self.assertTrue(message.startswith(f"{where}: a {type_name} cannot be stored as a term"),
                        message)
        self.assertIn("supported:", message)
        return message

    def test_unsupported_values_name_their_path(self):
        self.assertRefused(Opaque(), "value", "Opaque")
        self.assertRefused({"a": [1, Opaque()]}, "value.a[1]", "Opaque")
        self.assertRefused([{"k": {"deep": object()}}], "value[0].k.deep", "object")
        self.assertRefused((1, (2, 1j)), "value[1][1]", "complex")
        self.assertRefused({1: Opaque()}, "value[1]", "Opaque")
        self.assertRefused({Opaque(): 1}, "value key", "Opaque")
        self.assertRefused({frozenset({Opaque()})}, "value item item", "Opaque")
        self.assertRefused({"r": [Colour.RED]}, "value.r[0]", "Colour")
        self.assertRefused(len, "value", "builtin_function_or_method")
        self.assertRefused({"x": Opaque()}, "result.x", "Opaque", path="result")

    def test_pack_refuses_unsupported_values_too(self):
        with self.assertRaises(TermError) as caught:
            pack({"rows": [Opaque()]})
        self.assertIn("value.rows[0]: a Opaque cannot be stored", str(caught.exception))


class PackTests(SimpleTestCase):
    def test_pack_round_trips(self):
        for name, value in {**SAMPLES, "nested": NESTED}.items():
            with self.subTest(name):
                text = pack(value)
                self.assertIsInstance(text, str)
                text.encode("ascii")  # base64 text
                back = unpack(text)
                if name == "nested":
                    self.assertTrue(same(NESTED["orders"], back["orders"]))
                    self.assertTrue(same(NESTED["by_day"], back["by_day"]))
                else:
                    self.assertTrue(same(value, back), f"{value!r} came back as {back!r}")

    def test_pack_compresses_and_packed_size_counts_compressed_bytes(self):
        value = {"rows": [{"sku": f"SKU-{i % 10}", "price": decimal.Decimal("9.90")}
                          for i in range(2000)]}
        text = pack(value)
        plain = json.dumps(encode(value), separators=(",", ":")).encode()
        self.assertLess(packed_size(text), len(plain) / 20)
        self.assertEqual(packed_size(text), len(base64.b64decode(text)))
        for size in range(0, 40):
            blob = pack(b"x" * size)
            self.assertEqual(packed_size(blob), len(base64.b64decode(blob)))
        self.assertEqual(unpack(text), value)

    def test_packed_data_is_a_zlib_stream_at_every_size(self):
        # Small values are a stored block built by hand, larger ones deflated with a window to
        # size: zlib itself must read both, at and around every boundary.
        sizes = [0, 1, 2, terms.STORED_MAX - 1, terms.STORED_MAX, terms.STORED_MAX + 1,
                 511, 512, 513, 4096, 40_000, 70_000]
        for size in sizes:
            for data in (b"a" * size, bytes((i * 7919) % 251 for i in range(size))):
                with self.subTest(size=size, repetitive=data[:2] == b"aa"):
                    self.assertEqual(zlib.decompress(terms._deflate(data)), data)
        small = base64.b64decode(pack({"ok": True}))
        self.assertEqual(small[:3], b"\x78\x01\x01", "a small value is one stored block")
        self.assertEqual(unpack(pack({"ok": True})), {"ok": True})

    def test_terms_module_has_no_pickle(self):
        self.assertNotIn("pickle", vars(terms))


class DatabaseRoundTripTests(TestCase):
    """Encoded terms stored in a job's JSON column (jsonb on PostgreSQL) read back equal."""

    def test_encoded_terms_survive_the_json_column(self):
        values = {name: value for name, value in SAMPLES.items() if name not in PLAIN_FLOATS}
        values["nested"] = NESTED
        job = PlainWorker.enqueue({}, meta={"terms": {name: encode(value)
                                                      for name, value in values.items()}})
        stored = reload(job).meta["terms"]
        for name, value in values.items():
            with self.subTest(name):
                back = decode(stored[name])
                if name == "nested":
                    self.assertTrue(same(NESTED["orders"], back["orders"]))
                    self.assertTrue(same(NESTED["by_day"], back["by_day"]))
                else:
                    self.assertTrue(same(value, back), f"{value!r} came back as {back!r}")

    def test_floats_keep_their_type_and_sign_through_the_json_column(self):
        values = {name: SAMPLES[name] for name in PLAIN_FLOATS}
        values["big float"] = 1e16
        values["huge float"] = 1.5e300
        job = PlainWorker.enqueue({}, meta={"terms": {name: encode(value)
                                                      for name, value in values.items()}})
        stored = reload(job).meta["terms"]
        back = {name: decode(stored[name]) for name in values}
        self.assertEqual({name: type(value).__name__ for name, value in back.items()},
                         {name: "float" for name in values})
        self.assertEqual(math.copysign(1, back["negative zero"]), -1.0)
        self.assertEqual(back, values)

    def test_packed_terms_survive_the_json_column(self):
        job = PlainWorker.enqueue({}, meta={"packed": pack(NESTED)})
        back = unpack(reload(job).meta["packed"])
        self.assertTrue(same(NESTED["by_day"], back["by_day"]))
        self.assertTrue(same(NESTED["orders"], back["orders"]))
