"""localstripe's store for our runs: indexed by object type and PaymentIntents by customer, saved one object at a time.

localstripe keeps every object in one dict and answers from scans of it: each list scans the whole store, and so
does each Charge it renders (`Charge.refunds` lists the refunds by scanning), so every PaymentIntent in an answer
cost a few scans. With 5,000 intents (about 20,000 objects) one page of 100 intents took a second and a confirm
25 ms, and its state file was the whole store pickled again twice a second. `install` replaces those parts:

- lists read an index of the objects of one type (in store order, as the scan found them);
- PaymentIntents are listed by customer and `created` bounds from an ordered index, newest first as the scan sorted
  them (equal `created` in store order), a page found by bisection and `starting_after` by its position;
- the state is an SQLite file with one row per object (its attributes pickled, references to other objects of the
  store kept as their keys); a changed object is written again, at most every `write_delay` seconds, and at exit.

An object counts as changed when it enters or leaves the store, when one of its attributes is set, and when it is
read from the store (localstripe edits some nested values in place, such as `metadata`, after reading the object).
"""

from __future__ import annotations

import asyncio
import bisect
import importlib
import io
import pickle
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, overload

_PAYMENT_INTENT = "payment_intent"
_INTENT_ORDER_FIELDS = frozenset({"customer", "created"})  # a change of either moves the intent in its index
_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY,          -- the store's key, e.g. payment_intent:pi_...
    seq INTEGER NOT NULL,          -- when it entered the store: the store's order, and so the lists' order
    class TEXT NOT NULL,           -- module:qualname of the object's class
    state BLOB NOT NULL,           -- its attributes, pickled; other objects of the store as their keys
    in_store INTEGER NOT NULL      -- 0: deleted from the store, kept because other objects may still refer to it
)
"""


class _IntentOrder:
    """PaymentIntents newest first (equal `created` in store order), found by bisection."""

    def __init__(self) -> None:
        self._entries: list[tuple[int, int, Any]] = []  # (-created, seq, intent), sorted
        self._by_key: dict[str, tuple[int, int, Any]] = {}

    def add(self, key: str, seq: int, intent: Any) -> None:
        entry = (-int(intent.created), seq, intent)
        bisect.insort(self._entries, entry, key=lambda e: (e[0], e[1]))
        self._by_key[key] = entry

    def remove(self, key: str) -> None:
        entry = self._by_key.pop(key, None)
        if entry is not None:
            del self._entries[self._position(entry)]

    def window(self, low: int | None, high: int | None) -> tuple[int, int]:
        """The positions [start, stop) of the intents created within [low, high] (None: unbounded)."""
        start = 0 if high is None else bisect.bisect_left(self._entries, -high, key=lambda e: e[0])
        stop = len(self._entries) if low is None else bisect.bisect_right(self._entries, -low, key=lambda e: e[0])
        return start, stop

    def position(self, key: str) -> int | None:
        entry = self._by_key.get(key)
        return None if entry is None else self._position(entry)

    def objects(self, start: int, stop: int) -> _Window:
        return _Window(self._entries, start, stop)

    def _position(self, entry: tuple[int, int, Any]) -> int:
        return bisect.bisect_left(self._entries, (entry[0], entry[1]), key=lambda e: (e[0], e[1]))

    def __len__(self) -> int:
        return len(self._entries)


class _Window(Sequence[Any]):
    """A slice of an `_IntentOrder` as localstripe's `List` reads its `_list`: only the page it shows is built."""

    def __init__(self, entries: list[tuple[int, int, Any]], start: int, stop: int) -> None:
        self._entries, self._start, self._stop = entries, start, stop

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        positions = range(self._start, self._stop)[index]
        if isinstance(positions, range):
            return [self._entries[i][2] for i in positions]
        return self._entries[positions][2]

    def __iter__(self) -> Iterator[Any]:
        return (self._entries[i][2] for i in range(self._start, self._stop))


class StoreIndex:
    """What the store holds, by type and (PaymentIntents) by customer, kept in step with every change to it."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = {}
        self.key_of: dict[int, str] = {}  # id(object) -> its key, for the objects in the store
        self._by_type: dict[str, dict[str, Any]] = {}
        self._intents = _IntentOrder()
        self._intents_of: dict[object, _IntentOrder] = {}
        self._customer_of: dict[str, object] = {}  # intent key -> the customer it is indexed under
        self._next_seq = 0

    def add(self, key: str, obj: Any, seq: int | None = None) -> None:
        if key in self.seq:
            self.remove(key)
            seq = self.seq.get(key, seq)
        if seq is None:
            seq = self._next_seq
        self._next_seq = max(self._next_seq, seq + 1)
        self.seq[key] = seq
        self.key_of[id(obj)] = key
        kind, has_type, _ = key.partition(":")
        if has_type:
            self._by_type.setdefault(kind, {})[key] = obj
        if kind == _PAYMENT_INTENT and has_type:
            self._index_intent(key, seq, obj)

    def remove(self, key: str, obj: Any = None) -> None:
        kind, has_type, _ = key.partition(":")
        if has_type:
            obj = self._by_type.get(kind, {}).pop(key, obj)
        if obj is not None:
            self.key_of.pop(id(obj), None)
        if kind == _PAYMENT_INTENT and has_type:
            self._unindex_intent(key)

    def clear(self) -> None:
        self.seq.clear()
        self.key_of.clear()
        self._by_type.clear()
        self._intents = _IntentOrder()
        self._intents_of.clear()
        self._customer_of.clear()

    def reindex_intent(self, key: str, intent: Any) -> None:
        self._unindex_intent(key)
        self._index_intent(key, self.seq[key], intent)

    def of_type(self, kind: str) -> list[Any]:
        return list(self._by_type.get(kind, {}).values())

    def intents(self, customer: object = None) -> _IntentOrder:
        """Every PaymentIntent, or one customer's."""
        if customer is None:
            return self._intents
        return self._intents_of.get(customer) or _IntentOrder()

    def _index_intent(self, key: str, seq: int, intent: Any) -> None:
        self._intents.add(key, seq, intent)
        customer = getattr(intent, "customer", None)
        if customer is not None:
            self._intents_of.setdefault(customer, _IntentOrder()).add(key, seq, intent)
            self._customer_of[key] = customer

    def _unindex_intent(self, key: str) -> None:
        self._intents.remove(key)
        customer = self._customer_of.pop(key, None)
        if customer is not None:
            self._intents_of[customer].remove(key)


class StoreFile:
    """The store on disk: one SQLite row per object; writing one costs its own size, not the store's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        # WAL survives a killed process (only an OS crash can lose the last commits, which NORMAL allows).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def is_empty(self) -> bool:
        return self._db.execute("SELECT 1 FROM objects LIMIT 1").fetchone() is None

    def read(self) -> list[tuple[str, int, Any]]:
        """Every object of the store as (key, seq, object), in store order, references between them restored."""
        rows = self._db.execute("SELECT key, seq, class, state, in_store FROM objects ORDER BY seq").fetchall()
        shells = {key: _class(name).__new__(_class(name)) for key, _, name, _, _ in rows}
        for key, _, _, state, _ in rows:
            vars(shells[key]).update(_StateUnpickler(io.BytesIO(state), shells).load())
        return [(key, seq, shells[key]) for key, seq, _, _, in_store in rows if in_store]

    def write(
        self, store: dict[str, Any], index: StoreIndex, changed: set[str], removed: dict[str, Any], *, erase: bool
    ) -> None:
        """Write the changed objects and mark the removed ones (after erasing every row), in one transaction."""
        rows = [_row(key, dict.__getitem__(store, key), index, store, 1) for key in changed if key in store]
        gone = [_row(key, obj, index, store, 0) for key, obj in removed.items() if key not in store]
        self._db.execute("BEGIN")
        try:
            if erase:
                self._db.execute("DELETE FROM objects")
            self._db.executemany("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)", rows + gone)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()


def _row(key: str, obj: Any, index: StoreIndex, store: dict[str, Any], in_store: int) -> tuple[Any, ...]:
    buffer = io.BytesIO()
    _StatePickler(buffer, store, index).dump(vars(obj))
    cls = type(obj)
    return key, index.seq.get(key, -1), f"{cls.__module__}:{cls.__qualname__}", buffer.getvalue(), in_store


class _StatePickler(pickle.Pickler):
    """Pickles an object's attributes; another object of the store is written as its key."""

    def __init__(self, file: io.BytesIO, store: dict[str, Any], index: StoreIndex) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._store, self._index = store, index

    def persistent_id(self, obj: Any) -> str | None:
        key = self._index.key_of.get(id(obj))
        if key is not None and dict.get(self._store, key) is obj:
            return key
        return None


class _StateUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, shells: dict[str, Any]) -> None:
        super().__init__(file)
        self._shells = shells

    def persistent_load(self, pid: Any) -> Any:
        return self._shells[pid]


def _class(name: str) -> Any:
    module, _, qualname = name.partition(":")
    if not module.startswith("localstripe."):
        raise pickle.UnpicklingError(f"not a localstripe class: {name}")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


# -- installing it into localstripe --------------------------------------------------------------------------------


def install(
    resources: ModuleType, state: Path, *, write_delay: float, legacy_pickle: Path | None = None
) -> Callable[[], None]:
    """Patch localstripe's store, lists and persistence; load the state. Returns the flush to call at shutdown."""
    store: dict[str, Any] = resources.store
    index = StoreIndex()
    file = StoreFile(state)
    changed: set[str] = set()
    removed: dict[str, Any] = {}
    erased = False
    pending: list[asyncio.TimerHandle] = []

    def flush() -> None:
        nonlocal erased
        pending.clear()
        if changed or removed or erased:
            file.write(store, index, changed, removed, erase=erased)
            changed.clear()
            removed.clear()
            erased = False

    def schedule() -> None:
        if pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            flush()
            return
        pending.append(loop.call_later(write_delay, flush))

    def mark(key: str) -> None:
        changed.add(key)
        removed.pop(key, None)
        schedule()

    def set_item(self: dict[str, Any], key: str, value: Any) -> None:
        old = dict.get(self, key)
        if old is not None and old is not value:
            index.remove(key, old)
        dict.__setitem__(self, key, value)
        index.add(key, value)
        mark(key)

    def del_item(self: dict[str, Any], key: str) -> None:
        obj = dict.__getitem__(self, key)
        dict.__delitem__(self, key)
        index.remove(key, obj)
        changed.discard(key)
        removed[key] = obj
        schedule()

    def get_item(self: dict[str, Any], key: str) -> Any:
        obj = dict.__getitem__(self, key)
        mark(key)
        return obj

    def get(self: dict[str, Any], key: str, default: Any = None) -> Any:
        obj = dict.get(self, key, default)
        if obj is not default:
            mark(key)
        return obj

    def clear(self: dict[str, Any]) -> None:
        nonlocal erased
        dict.clear(self)
        index.clear()
        changed.clear()
        removed.clear()
        erased = True
        schedule()

    def load(self: dict[str, Any]) -> None:
        """Read the state once at startup; a store pickled whole by an earlier version is imported first."""
        if file.is_empty() and legacy_pickle is not None and legacy_pickle.exists():
            saved: dict[str, Any] = pickle.loads(legacy_pickle.read_bytes())
            for key, obj in saved.items():
                dict.__setitem__(self, key, obj)
                index.add(key, obj)
            file.write(self, index, set(saved), {}, erase=False)
            legacy_pickle.rename(legacy_pickle.with_name(legacy_pickle.name + ".imported"))
            return
        for key, seq, obj in file.read():
            dict.__setitem__(self, key, obj)
            index.add(key, obj, seq)

    store_class = resources.Store
    store_class.__setitem__ = set_item
    store_class.__delitem__ = del_item
    store_class.__getitem__ = get_item
    store_class.get = get
    store_class.clear = clear
    store_class.try_load_from_disk = load
    store_class.dump_to_disk = lambda self: None  # writes follow the changes themselves (see mark)

    stripe_object = resources.StripeObject

    def set_attribute(self: Any, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        key = index.key_of.get(id(self))
        if key is not None and dict.get(store, key) is self:
            mark(key)
            if name in _INTENT_ORDER_FIELDS and key.startswith(_PAYMENT_INTENT + ":"):
                index.reindex_intent(key, self)

    stripe_object.__setattr__ = set_attribute

    def list_all(cls: Any, url: str, limit: object = None, starting_after: object = None, **kwargs: object) -> Any:
        if kwargs:
            raise resources.UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        listing = resources.List(url, limit=limit, starting_after=starting_after)
        listing._list = index.of_type(cls.object)
        return listing

    stripe_object._api_list_all = classmethod(list_all)

    def list_payment_intents(
        cls: Any, url: str, limit: object = None, starting_after: object = None, customer: object = None,
        created: object = None, **kwargs: object,
    ) -> Any:  # fmt: skip
        # Stripe filters a PaymentIntent list by customer and creation time, newest first; localstripe refuses every
        # filter. The charge worker's search for an intent an earlier attempt never recorded depends on them
        # (shared/payments/charges.py, _unrecorded_intent).
        if kwargs:
            raise resources.UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        listing = resources.List(url, limit=limit, starting_after=starting_after)
        low, high = _created_bounds(created, resources.UserError)
        order = index.intents(customer)
        start, stop = order.window(low, high)
        first = start
        if starting_after is not None:
            after = order.position(f"{_PAYMENT_INTENT}:{starting_after}")
            if after is not None and start <= after < stop:  # as localstripe: an unknown id starts at the top
                first = after + 1
        listing._list = order.objects(start, stop)
        listing._starting_pos = first - start
        return listing

    resources.PaymentIntent._api_list_all = classmethod(list_payment_intents)
    store.try_load_from_disk()  # type: ignore[attr-defined]
    return flush


def _created_bounds(created: object, error: type[Exception]) -> tuple[int | None, int | None]:
    """Stripe's `created` filter (a timestamp, or gt/gte/lt/lte) as inclusive bounds; None where unbounded."""
    bounds = created if isinstance(created, dict) else {} if created is None else {"eq": created}
    low: int | None = None
    high: int | None = None
    try:
        for op, raw in bounds.items():
            value = int(str(raw))
            if op in ("gt", "gte", "eq"):
                value += op == "gt"
                low = value if low is None else max(low, value)
            if op in ("lt", "lte", "eq"):
                value -= op == "lt"
                high = value if high is None else min(high, value)
            if op not in ("gt", "gte", "lt", "lte", "eq"):
                raise ValueError(op)
    except ValueError as exc:
        raise error(400, "Bad request") from exc
    return low, high
