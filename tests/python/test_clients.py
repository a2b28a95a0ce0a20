#!/usr/bin/env python3
"""Mycelium end to end with real Python clients: psycopg 3 and SQLAlchemy 2.

Usage: test_clients.py DSN   (or MYCELIUM_DSN=... test_clients.py)

DSN is a libpq connection string, e.g.
"host=127.0.0.1 port=5432 user=mycelium password=mycelium dbname=mycelium".

Every check runs on its own connection and its own tables, so one failure does not hide the
others. Each prints PASS or FAIL with the reason; the script exits 1 if any check failed and
prints "ALL CHECKS PASSED" otherwise. Run by mycelium/tests/it/clients.rs (see tests/run.sh).
"""

from __future__ import annotations

import datetime
import os
import sys
import traceback
import uuid
from decimal import Decimal

import psycopg
import psycopg.errors
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

UTC = datetime.timezone.utc


class Mismatch(Exception):
    pass


def strict(value):
    """A form of value whose == also compares types (and Decimal scales), element by element."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [strict(v) for v in value])
    if isinstance(value, dict):
        return ("dict", sorted((k, strict(v)) for k, v in value.items()))
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    return (type(value).__name__, value)


def eq(what, actual, expected):
    """Equal values of the same Python types (and, for Decimal, the same scale)."""
    if strict(actual) != strict(expected):
        raise Mismatch(f"{what}: expected {expected!r}, got {actual!r}")


def expect_error(what, sqlstate, fn):
    """fn() must raise a psycopg.Error carrying `sqlstate`; returns the error."""
    try:
        fn()
    except psycopg.Error as e:
        if e.sqlstate != sqlstate:
            raise Mismatch(f"{what}: expected SQLSTATE {sqlstate}, got {e.sqlstate!r}: {e}") from e
        return e
    raise Mismatch(f"{what}: expected SQLSTATE {sqlstate}, but it succeeded")


DSN = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MYCELIUM_DSN", "")


def connect(**kwargs):
    return psycopg.connect(DSN, connect_timeout=10, **kwargs)


# --- psycopg -------------------------------------------------------------------------------------

TYPES_DDL = """
CREATE TABLE {table} (
    id    serial PRIMARY KEY,
    i2    smallint,
    i4    integer,
    i8    bigint,
    f8    double precision,
    num   numeric(10,2),
    b     boolean,
    t     text,
    vc    varchar(10),
    ts    timestamp,
    tstz  timestamptz,
    d     date,
    by    bytea,
    j     jsonb,
    u     uuid
)"""

COLUMNS = ["i2", "i4", "i8", "f8", "num", "b", "t", "vc", "ts", "tstz", "d", "by", "j", "u"]

ROW = (
    -7,
    2_000_000_000,
    9_000_000_000_000,
    3.5e-7,
    Decimal("12345678.90"),
    True,
    "héllo 'wörld' \\ \" ✓",
    "ten chars!",
    datetime.datetime(2024, 2, 29, 23, 59, 58, 123456),
    datetime.datetime(2024, 7, 1, 12, 30, 0, tzinfo=UTC),
    datetime.date(1999, 12, 31),
    bytes(range(256)),
    {"k": [1, 2.5, None, True, "x"], "nested": {"a": "b"}},
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
)


def params_for(row):
    return tuple(Jsonb(v) if isinstance(v, dict) else
                 psycopg.Binary(v) if isinstance(v, bytes) else v for v in row)


def check_types(table, conn_kwargs):
    """Parameters of every type in auto, binary (%b) and text (%t) formats; results read back in
    text and in binary format, each compared value by value."""
    with connect(autocommit=True, **conn_kwargs) as conn:
        conn.execute(TYPES_DDL.format(table=table))
        cols = ", ".join(COLUMNS)
        for placeholder in ("%s", "%b", "%t"):
            marks = ", ".join([placeholder] * len(COLUMNS))
            row = params_for(ROW)
            if placeholder == "%t":
                # bytea in text format must go as text; psycopg.Binary forces binary.
                row = tuple(v.obj if isinstance(v, psycopg.Binary) else v for v in row)
            got = conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks}) RETURNING id",
                               row).fetchone()
            eq(f"RETURNING id ({placeholder})", type(got[0]), int)
        conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['%s'] * len(COLUMNS))})",
                     (None,) * len(COLUMNS))
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute(f"SELECT id, {cols} FROM {table} ORDER BY id")
                rows = cur.fetchall()
                eq(f"row count (binary={binary})", len(rows), 4)
                for n, r in enumerate(rows[:3]):
                    eq(f"id of row {n} (binary={binary})", r[0], n + 1)
                    for name, actual, expected in zip(COLUMNS, r[1:], ROW):
                        eq(f"row {n} column {name} (binary={binary})", actual, expected)
                eq(f"NULL row (binary={binary})", rows[3][1:], (None,) * len(COLUMNS))
        # Filtering by a parameter of each type finds the rows.
        for name, value in zip(COLUMNS, params_for(ROW)):
            n = conn.execute(f"SELECT count(*) FROM {table} WHERE {name} = %s", (value,)).fetchone()[0]
            eq(f"count WHERE {name} = %s", n, 3)
        got = conn.execute(f"SELECT j ->> 'nested', j -> 'k' -> 1 FROM {table} WHERE id = 1").fetchone()
        eq("jsonb operators", got, ('{"a": "b"}', 2.5))


def check_binary_bytea():
    """psycopg.Binary round trip, including NUL bytes and a large value, both result formats."""
    payloads = [b"", b"\x00", b"\x00\xff\x00'\\x", bytes(range(256)) * 400]
    with connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE py_blobs (id integer PRIMARY KEY, data bytea NOT NULL)")
        for i, p in enumerate(payloads):
            conn.execute("INSERT INTO py_blobs VALUES (%s, %s)", (i, psycopg.Binary(p)))
        for binary in (False, True):
            rows = conn.execute("SELECT id, data, length(data) FROM py_blobs ORDER BY id",
                                binary=binary).fetchall()
            eq(f"blob rows (binary={binary})", len(rows), len(payloads))
            for (i, data, length), p in zip(rows, payloads):
                eq(f"blob {i} (binary={binary})", data, p)
                eq(f"length(blob {i})", length, len(p))


def check_prepared():
    """Server-side prepared statements: prepare_threshold=0 prepares everything; prepare=True
    forces it on a default connection. The same statements run many times with new parameters."""
    with connect(autocommit=True, prepare_threshold=0) as conn:
        conn.execute("CREATE TABLE py_prep (id integer PRIMARY KEY, name text NOT NULL, score bigint)")
        for i in range(20):
            conn.execute("INSERT INTO py_prep (id, name, score) VALUES (%s, %s, %s)",
                         (i, f"n{i}", i * 1000))
        for i in range(0, 20, 3):
            got = conn.execute("SELECT name, score FROM py_prep WHERE id = %s", (i,)).fetchone()
            eq(f"prepared select id={i}", got, (f"n{i}", i * 1000))
        got = conn.execute("SELECT count(*), sum(score) FROM py_prep WHERE score >= %s", (5000,)).fetchone()
        eq("prepared aggregate", got, (15, Decimal(sum(i * 1000 for i in range(5, 20)))))
        n = conn.execute("UPDATE py_prep SET score = score + %s WHERE id < %s", (1, 10)).rowcount
        eq("prepared update rowcount", n, 10)
    with connect(autocommit=True) as conn:
        for i in range(5):
            got = conn.execute("SELECT score FROM py_prep WHERE name = %s", (f"n{i}",), prepare=True).fetchone()
            eq(f"prepare=True select n{i}", got, (i * 1000 + 1,))
        with conn.cursor(binary=True) as cur:
            for i in (7, 11):
                cur.execute("SELECT id, name, score FROM py_prep WHERE id = %s", (i,), prepare=True)
                eq(f"binary prepared id={i}", cur.fetchone(), (i, f"n{i}", i * 1000 + (1 if i < 10 else 0)))
        n = conn.execute("DELETE FROM py_prep WHERE id >= %s", (15,), prepare=True).rowcount
        eq("prepared delete rowcount", n, 5)


def check_arrays():
    """Array columns and `= ANY(%s)` with a Python list, in text and binary, and through
    SQLAlchemy's ARRAY type (`contains`, `any_`)."""
    with connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE py_arrays (id integer PRIMARY KEY, tags text[] NOT NULL, "
                     "scores bigint[])")
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                base = 10 if binary else 0
                cur.executemany("INSERT INTO py_arrays VALUES (%s, %s, %s)",
                                [(base + 1, ["a", "b c"], [1, 2]), (base + 2, ["x"], None),
                                 (base + 3, [], [3, None])])
                cur.execute("SELECT tags, scores FROM py_arrays WHERE id = ANY(%s) ORDER BY id",
                            ([base + 1, base + 3],))
                eq(f"arrays binary={binary}", cur.fetchall(),
                   [(["a", "b c"], [1, 2]), ([], [3, None])])
                cur.execute("SELECT id FROM py_arrays WHERE %s = ANY(tags) AND id > %s",
                            ("x", base))
                eq(f"element = ANY(column) binary={binary}", cur.fetchall(), [(base + 2,)])
        expect_error("malformed array literal", "22P02",
                     lambda: conn.execute("INSERT INTO py_arrays VALUES (99, '{a,', NULL)"))
    metadata = sa.MetaData()
    table = sa.Table("py_sa_arrays", metadata,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("labels", ARRAY(sa.Text), nullable=False))
    with engine().begin() as conn:
        metadata.create_all(conn)
        conn.execute(table.insert(), [{"id": 1, "labels": ["red", "blue"]},
                                      {"id": 2, "labels": ["green"]}])
    with engine().connect() as conn:
        got = conn.execute(sa.select(table.c.id).where(table.c.labels.contains(["blue"]))).all()
        eq("sqlalchemy ARRAY contains", [tuple(r) for r in got], [(1,)])
        got = conn.execute(sa.select(table.c.labels).where(
            sa.literal("green") == sa.any_(table.c.labels))).scalar_one()
        eq("sqlalchemy any_", got, ["green"])


def check_intervals():
    """Interval columns with datetime.timedelta, in text and binary; sorted by their span."""
    td = datetime.timedelta
    with connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE py_intervals (id integer PRIMARY KEY, every interval)")
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                base = 10 if binary else 0
                cur.executemany("INSERT INTO py_intervals VALUES (%s, %s)",
                                [(base + 1, td(days=1, hours=1)),
                                 (base + 2, td(minutes=90, microseconds=5)),
                                 (base + 3, td(days=-2, seconds=30))])
                cur.execute("SELECT id, every FROM py_intervals WHERE id > %s ORDER BY every",
                            (base,))
                eq(f"intervals binary={binary}", cur.fetchall(),
                   [(base + 3, td(days=-2, seconds=30)), (base + 2, td(minutes=90, microseconds=5)),
                    (base + 1, td(days=1, hours=1))])
                cur.execute("SELECT id FROM py_intervals WHERE every = %s AND id > %s",
                            (td(hours=25), base))
                eq(f"25 hours = 1 day 1 hour binary={binary}", cur.fetchall(), [(base + 1,)])


def check_executemany_and_pipeline():
    """executemany (which psycopg runs in pipeline mode) and an explicit pipeline."""
    with connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE py_many (id integer PRIMARY KEY, v text, n double precision)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO py_many (id, v, n) VALUES (%s, %s, %s)",
                            [(i, f"v{i}", i / 4) for i in range(100)])
        got = conn.execute("SELECT count(*), sum(id), max(v), sum(n) FROM py_many").fetchone()
        eq("executemany", got, (100, 4950, "v99", 1237.5))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO py_many (id, v) VALUES (%s, %s) RETURNING id * 2",
                            [(1000, "x"), (1001, "y")], returning=True)
            results = []
            while True:
                results.append(cur.fetchone())
                if not cur.nextset():
                    break
            eq("executemany returning", results, [(2000,), (2002,)])
        with conn.pipeline():
            c1 = conn.execute("UPDATE py_many SET v = %s WHERE id < %s", ("low", 10))
            c2 = conn.execute("SELECT count(*) FROM py_many WHERE v = %s", ("low",))
            c3 = conn.execute("DELETE FROM py_many WHERE id >= %s", (1000,))
        eq("pipeline update rowcount", c1.rowcount, 10)
        eq("pipeline select", c2.fetchone(), (10,))
        eq("pipeline delete rowcount", c3.rowcount, 2)


def check_pipeline_atomicity():
    """Statements between two Syncs form one implicit transaction, as in Postgres: a failed
    executemany or pipeline keeps none of its rows, on one node or spread over several."""
    with connect(autocommit=True) as conn:
        for table, options in [
            ("py_atomic", ""),
            ("py_atomic_sharded", " WITH (mycelium.shard_keys = 'id', mycelium.shards = 6)"),
        ]:
            conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY){options}")
            try:
                with conn.cursor() as cur:
                    cur.executemany(f"INSERT INTO {table} VALUES (%s)",
                                    [(i,) for i in range(1, 20)] + [(7,)])
            except psycopg.errors.UniqueViolation:
                pass
            else:
                raise AssertionError(f"{table}: executemany with a duplicate key succeeded")
            eq(f"{table}: a failed executemany keeps none of its rows",
               conn.execute(f"SELECT count(*) FROM {table}").fetchone(), (0,))
            try:
                with conn.pipeline():
                    conn.execute(f"INSERT INTO {table} VALUES (%s)", (10,))
                    conn.execute(f"INSERT INTO {table} VALUES (%s)", (11,))
                    conn.execute(f"INSERT INTO {table} VALUES (%s)", (10,))
            except psycopg.errors.UniqueViolation:
                pass
            else:
                raise AssertionError(f"{table}: a pipeline with a duplicate key succeeded")
            eq(f"{table}: a failed pipeline keeps none of its rows",
               conn.execute(f"SELECT count(*) FROM {table}").fetchone(), (0,))
            eq(f"{table}: status after a failed pipeline", conn.info.transaction_status,
               TransactionStatus.IDLE)
            with conn.pipeline():
                conn.execute(f"INSERT INTO {table} VALUES (%s)", (20,))
                conn.execute(f"INSERT INTO {table} VALUES (%s)", (21,))
            eq(f"{table}: a pipeline that succeeds commits",
               conn.execute(f"SELECT id FROM {table} ORDER BY id").fetchall(), [(20,), (21,)])
            eq(f"{table}: status after a pipeline", conn.info.transaction_status,
               TransactionStatus.IDLE)


def check_transactions():
    """Commit, rollback, conn.transaction() blocks, nested blocks as savepoints, and the
    transaction status the server reports."""
    with connect() as conn:  # not autocommit: psycopg opens transactions itself
        conn.execute("CREATE TABLE py_tx (id integer PRIMARY KEY, v text)")
        conn.commit()
        conn.execute("INSERT INTO py_tx VALUES (1, 'rolled back')")
        eq("status inside a transaction", conn.info.transaction_status, TransactionStatus.INTRANS)
        conn.rollback()
        eq("status after rollback", conn.info.transaction_status, TransactionStatus.IDLE)
        conn.execute("INSERT INTO py_tx VALUES (2, 'committed')")
        conn.commit()
        eq("after commit/rollback", conn.execute("SELECT id, v FROM py_tx ORDER BY id").fetchall(),
           [(2, "committed")])
        conn.commit()
    with connect(autocommit=True) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO py_tx VALUES (3, 'outer')")
            try:
                with conn.transaction():  # a savepoint
                    conn.execute("INSERT INTO py_tx VALUES (4, 'inner')")
                    raise RuntimeError("roll back the savepoint")
            except RuntimeError:
                pass
            with conn.transaction():
                conn.execute("INSERT INTO py_tx VALUES (5, 'inner kept')")
        try:
            with conn.transaction():
                conn.execute("INSERT INTO py_tx VALUES (6, 'doomed')")
                raise RuntimeError("roll back everything")
        except RuntimeError:
            pass
        ids = [r[0] for r in conn.execute("SELECT id FROM py_tx ORDER BY id")]
        eq("transaction blocks", ids, [2, 3, 5])
        # Another connection does not see uncommitted rows.
        with conn.transaction():
            conn.execute("INSERT INTO py_tx VALUES (7, 'pending')")
            with connect(autocommit=True) as other:
                n = other.execute("SELECT count(*) FROM py_tx WHERE id = 7").fetchone()[0]
                eq("uncommitted row seen by another connection", n, 0)
        with connect(autocommit=True) as other:
            n = other.execute("SELECT count(*) FROM py_tx WHERE id = 7").fetchone()[0]
            eq("committed row seen by another connection", n, 1)


def check_errors():
    """SQLSTATEs on psycopg exceptions; an aborted transaction refuses statements until rollback."""
    with connect() as conn:
        conn.execute("CREATE TABLE py_err (id integer PRIMARY KEY, name varchar(5) NOT NULL)")
        conn.execute("INSERT INTO py_err VALUES (1, 'a')")
        conn.commit()
        e = expect_error("duplicate key", "23505",
                         lambda: conn.execute("INSERT INTO py_err VALUES (%s, %s)", (1, "b")))
        if not isinstance(e, psycopg.errors.UniqueViolation):
            raise Mismatch(f"duplicate key raised {type(e).__name__}, not UniqueViolation")
        eq("status after an error", conn.info.transaction_status, TransactionStatus.INERROR)
        expect_error("statement in an aborted transaction", "25P02",
                     lambda: conn.execute("SELECT 1"))
        conn.rollback()
        eq("SELECT after rollback", conn.execute("SELECT 1").fetchone(), (1,))
        conn.rollback()
        cases = [
            ("INSERT INTO py_err VALUES (%s, %s)", (2, None), "23502"),
            ("INSERT INTO py_err VALUES (%s, %s)", (3, "toolong"), "22001"),
            ("SELECT * FROM py_missing", None, "42P01"),
            ("SELECT nope FROM py_err", None, "42703"),
            ("SELEC 1", None, "42601"),
            ("SELECT 1 / %s", (0,), "22012"),
            ("SELECT %s::integer", ("abc",), "22P02"),
        ]
        wrong = []
        for sql, params, code in cases:
            try:
                expect_error(sql, code, lambda: conn.execute(sql, params))
            except Mismatch as m:
                wrong.append(str(m))
            conn.rollback()
        if wrong:
            raise Mismatch("; ".join(wrong))
        eq("rows after errors", conn.execute("SELECT id, name FROM py_err").fetchall(), [(1, "a")])
        conn.rollback()


def check_copy():
    """COPY FROM STDIN and TO STDOUT through psycopg, in text and binary formats."""
    with connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE py_copy (id integer PRIMARY KEY, name text, amount numeric(8,2), at date)")
        rows = [(1, "a\tb", Decimal("1.50"), datetime.date(2020, 1, 1)),
                (2, None, Decimal("-2.25"), None),
                (3, "line\nbreak \\ slash", Decimal("0.00"), datetime.date(2021, 6, 30))]
        with conn.cursor() as cur:
            with cur.copy("COPY py_copy (id, name, amount, at) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            with cur.copy("COPY (SELECT id, name, amount, at FROM py_copy ORDER BY id) TO STDOUT") as copy:
                copy.set_types(["int4", "text", "numeric", "date"])
                eq("COPY TO (text)", list(copy.rows()), rows)
            with cur.copy("COPY py_copy (id, name, amount, at) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text", "numeric", "date"])
                copy.write_row((4, "binary", Decimal("4.00"), datetime.date(2022, 2, 2)))
            with cur.copy("COPY (SELECT id, name FROM py_copy WHERE id >= 3 ORDER BY id) TO STDOUT (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text"])
                eq("COPY TO (binary)", list(copy.rows()),
                   [(3, "line\nbreak \\ slash"), (4, "binary")])
        eq("rows after COPY", conn.execute("SELECT count(*), sum(amount) FROM py_copy").fetchone(),
           (4, Decimal("3.25")))


# --- SQLAlchemy 2 ------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "sa_authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50), unique=True)
    born: Mapped[datetime.date | None]
    books: Mapped[list["Book"]] = relationship(back_populates="author", cascade="all, delete-orphan",
                                               order_by="Book.id")


class Book(Base):
    __tablename__ = "sa_books"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(100))
    price: Mapped[Decimal] = mapped_column(sa.Numeric(10, 2))
    published: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True),
                                                         server_default=sa.func.now())
    meta: Mapped[dict] = mapped_column(JSONB, default=dict)
    in_print: Mapped[bool] = mapped_column(default=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("sa_authors.id"))
    author: Mapped[Author] = relationship(back_populates="books")


def engine():
    info = psycopg.conninfo.conninfo_to_dict(DSN)
    url = sa.URL.create("postgresql+psycopg", username=info.get("user"), password=info.get("password"),
                        host=info.get("host"), port=int(info["port"]) if "port" in info else None,
                        database=info.get("dbname"))
    return sa.create_engine(url, connect_args={"connect_timeout": 10})


def check_sqlalchemy_schema():
    """create_all, then the inspector sees the tables and their columns."""
    eng = engine()
    try:
        insp = sa.inspect(eng)
        eq("has_table before create_all", insp.has_table("sa_books"), False)
        Base.metadata.create_all(eng)
        insp = sa.inspect(eng)
        names = insp.get_table_names()
        for t in ("sa_authors", "sa_books"):
            if t not in names:
                raise Mismatch(f"get_table_names() = {names!r} lacks {t}")
            eq(f"has_table({t})", insp.has_table(t), True)
        eq("has_table(nope)", insp.has_table("sa_nope"), False)
        cols = [c["name"] for c in insp.get_columns("sa_books")]
        eq("get_columns(sa_books)", cols,
           ["id", "title", "price", "published", "meta", "in_print", "author_id"])
        # create_all again is a no-op (it checks has_table first).
        Base.metadata.create_all(eng)
    finally:
        eng.dispose()


def check_sqlalchemy_orm():
    """The ORM: add/commit with server-generated keys, filter queries, joins, updates, deletes."""
    eng = engine()
    try:
        with Session(eng) as s:
            ursula = Author(name="Ursula", born=datetime.date(1929, 10, 21))
            ursula.books = [Book(title="Earthsea", price=Decimal("9.99"), meta={"series": True}),
                            Book(title="The Dispossessed", price=Decimal("12.50"))]
            iain = Author(name="Iain", born=None)
            s.add_all([ursula, iain])
            s.commit()
            if not (isinstance(ursula.id, int) and isinstance(iain.id, int) and ursula.id != iain.id):
                raise Mismatch(f"generated author ids: {ursula.id!r}, {iain.id!r}")
            book_ids = [b.id for b in ursula.books]
            if len(set(book_ids)) != 2 or not all(isinstance(i, int) for i in book_ids):
                raise Mismatch(f"generated book ids: {book_ids!r}")
            ids = (ursula.id, iain.id)

        with Session(eng) as s:
            titles = s.scalars(sa.select(Book.title).where(Book.price > 10).order_by(Book.title)).all()
            eq("filter price > 10", titles, ["The Dispossessed"])
            u = s.scalars(sa.select(Author).filter_by(name="Ursula")).one()
            eq("author id", u.id, ids[0])
            eq("author born", u.born, datetime.date(1929, 10, 21))
            eq("lazy-loaded books", [b.title for b in u.books], ["Earthsea", "The Dispossessed"])
            earthsea = u.books[0]
            eq("jsonb attribute", earthsea.meta, {"series": True})
            eq("default jsonb", u.books[1].meta, {})
            eq("numeric attribute", earthsea.price, Decimal("9.99"))
            eq("default boolean", earthsea.in_print, True)
            age = datetime.datetime.now(UTC) - earthsea.published
            if earthsea.published.tzinfo is None or not datetime.timedelta(minutes=-5) < age < datetime.timedelta(hours=1):
                raise Mismatch(f"server_default now(): published = {earthsea.published!r}")
            counts = s.execute(
                sa.select(Author.name, sa.func.count(Book.id))
                .join(Author.books, isouter=True)
                .group_by(Author.name)
                .order_by(Author.name)
            ).all()
            eq("outer join with count", [tuple(r) for r in counts], [("Iain", 0), ("Ursula", 2)])
            iain = s.get(Author, ids[1])
            eq("session.get", (iain.name, iain.born), ("Iain", None))

            earthsea.price = Decimal("11.00")
            earthsea.meta = {"series": True, "books": 6}
            s.commit()
            s.execute(sa.update(Book).where(Book.title == "The Dispossessed").values(in_print=False))
            s.commit()

        with Session(eng) as s:
            rows = s.execute(sa.select(Book.title, Book.price, Book.in_print, Book.meta).order_by(Book.id)).all()
            eq("after updates", [tuple(r) for r in rows],
               [("Earthsea", Decimal("11.00"), True, {"series": True, "books": 6}),
                ("The Dispossessed", Decimal("12.50"), False, {})])
            s.delete(s.get(Author, ids[1]))
            s.commit()
            eq("authors after delete", s.scalars(sa.select(Author.name)).all(), ["Ursula"])
            s.delete(s.get(Author, ids[0]))  # cascades to the books
            s.commit()
            eq("books after cascade", s.scalar(sa.select(sa.func.count()).select_from(Book)), 0)
            eq("authors after cascade", s.scalar(sa.select(sa.func.count()).select_from(Author)), 0)
            s.execute(sa.delete(Book))
            s.commit()
    finally:
        eng.dispose()


def check_reflection():
    """What SQLAlchemy reflects of a table (precision, nullability, defaults, keys, indexes),
    binary cursors, and a unique violation's detail."""
    with connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE py_items (id int PRIMARY KEY, price numeric(8,3) NOT NULL, "
                     "label text, created timestamptz DEFAULT now())")
        conn.execute("CREATE INDEX py_items_label ON py_items (label)")
        conn.execute("CREATE TABLE py_item_tags (id int PRIMARY KEY, "
                     "item_id int REFERENCES py_items(id) ON DELETE CASCADE, tag text, "
                     "UNIQUE (item_id, tag))")
        conn.execute("INSERT INTO py_items (id, price, label) VALUES (%s, %s, %s)",
                     (1, Decimal("1.500"), "one"))
        row = conn.execute("SELECT id, price, label FROM py_items WHERE id = %s", (1,)).fetchone()
        eq("row", row, (1, Decimal("1.500"), "one"))
        eq("numeric text", str(row[1]), "1.500")
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT price, label FROM py_items WHERE id = %b", (1,))
            eq("binary cursor", cur.fetchone(), (Decimal("1.500"), "one"))
        try:
            conn.execute("INSERT INTO py_items (id, price) VALUES (1, 2)")
            raise Mismatch("duplicate accepted")
        except psycopg.errors.UniqueViolation as e:
            eq("sqlstate", e.diag.sqlstate, "23505")
            eq("detail", e.diag.message_detail, "Key (id)=(1) already exists.")
    eng = engine()
    try:
        inspector = sa.inspect(eng)
        columns = {c["name"]: c for c in inspector.get_columns("py_items")}
        eq("columns", list(columns), ["id", "price", "label", "created"])
        price = columns["price"]["type"]
        if not isinstance(price, sa.Numeric):
            raise Mismatch(f"price reflected as {price!r}")
        eq("numeric(8,3)", (price.precision, price.scale), (8, 3))
        eq("nullable", (columns["price"]["nullable"], columns["label"]["nullable"]), (False, True))
        if "now()" not in str(columns["created"]["default"]):
            raise Mismatch(f"created default {columns['created']['default']!r}")
        # Keys and indexes: SQLAlchemy reads them with unnest(), generate_subscripts() and
        # array_agg() over pg_index's int2vector columns.
        pk = inspector.get_pk_constraint("py_items")
        eq("primary key", (pk["name"], pk["constrained_columns"]), ("py_items_pkey", ["id"]))
        eq("indexes", [(i["name"], i["column_names"], i["unique"])
                       for i in inspector.get_indexes("py_items")],
           [("py_items_label", ["label"], False)])
        eq("unique constraints", [(u["name"], u["column_names"])
                                  for u in inspector.get_unique_constraints("py_item_tags")],
           [("py_item_tags_item_id_tag_key", ["item_id", "tag"])])
        eq("indexes of a unique constraint",
           [(i["name"], i["column_names"], i["unique"], i.get("duplicates_constraint"))
            for i in inspector.get_indexes("py_item_tags")],
           [("py_item_tags_item_id_tag_key", ["item_id", "tag"], True,
             "py_item_tags_item_id_tag_key")])
        eq("foreign keys", [(f["name"], f["constrained_columns"], f["referred_table"],
                             f["referred_columns"], f["options"])
                            for f in inspector.get_foreign_keys("py_item_tags")],
           [("py_item_tags_item_id_fkey", ["item_id"], "py_items", ["id"],
             {"ondelete": "CASCADE"})])

        metadata = sa.MetaData()
        table = sa.Table("py_items", metadata, autoload_with=eng)  # reflects indexes too
        eq("autoloaded key", [str(c.name) for c in table.primary_key.columns], ["id"])
        eq("autoloaded indexes", sorted(str(i.name) for i in table.indexes), ["py_items_label"])
        tags = sa.Table("py_item_tags", metadata, autoload_with=eng)
        eq("autoloaded foreign key",
           [(str(f.parent.name), str(f.column.table.name), str(f.column.name))
            for f in tags.foreign_keys],
           [("item_id", "py_items", "id")])
        with eng.connect() as c:
            eq("autoloaded select",
               c.execute(sa.select(table.c.label).where(table.c.id == 1)).scalar_one(), "one")
    finally:
        eng.dispose()


CHECKS = [
    ("types, unnamed statements", lambda: check_types("py_types", {"prepare_threshold": None})),
    ("types, prepare_threshold=0", lambda: check_types("py_types_prep", {"prepare_threshold": 0})),
    ("binary bytea", check_binary_bytea),
    ("prepared statements", check_prepared),
    ("arrays", check_arrays),
    ("intervals", check_intervals),
    ("executemany and pipeline", check_executemany_and_pipeline),
    ("pipeline atomicity", check_pipeline_atomicity),
    ("transactions", check_transactions),
    ("errors and SQLSTATEs", check_errors),
    ("copy", check_copy),
    ("sqlalchemy schema", check_sqlalchemy_schema),
    ("sqlalchemy orm", check_sqlalchemy_orm),
    ("sqlalchemy reflection", check_reflection),
]


def main():
    if not DSN:
        print("usage: test_clients.py DSN (or set MYCELIUM_DSN)", file=sys.stderr)
        return 2
    print(f"psycopg {psycopg.__version__} (libpq {psycopg.pq.version()}), SQLAlchemy {sa.__version__}")
    failed = []
    for name, check in CHECKS:
        try:
            check()
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the next check runs
            failed.append(name)
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            where = traceback.extract_tb(e.__traceback__)
            line = next((f"line {f.lineno}: {f.line}" for f in reversed(where)
                         if f.filename == __file__), "")
            print(f"FAIL {name}: {detail}\n     at {line}", flush=True)
        else:
            print(f"PASS {name}", flush=True)
    if failed:
        print(f"{len(failed)} of {len(CHECKS)} checks failed: {', '.join(failed)}")
        return 1
    print("ALL CHECKS PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
